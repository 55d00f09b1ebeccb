"""Only a document's submitter may change (appType 2) or withdraw (appType 3) it: another
enterprise's attempt is refused NOT_SUBMITTER, answered to that enterprise, and the owner's
declaration goes on as if it never came. Receipts go to each document's submitter."""
from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.tools.generator import generate
from services.common.senders import same_sender, stamp
from services.common import codes
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.common.receipts import receiver_of
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

TIMEOUT = 60_000
NO_APP_TIME_CHECK = 10**15  # these clocks start in 1970, before every appTime
INTRUDER = "3301999999"


def submitted(s) -> list[dict]:
    """The set's order, payment, waybill and inventory, each stamped with its own sender."""
    return [stamp(copy.deepcopy(d)) for d in s.documents]


def foreign_change(doc: dict, app_type: str, **fields) -> dict:
    """What the issue's intruder sends: the owner's document, a new guid, a later appTime,
    other values, sent in by INTRUDER."""
    change = copy.deepcopy(doc)
    later = datetime.strptime(doc["appTime"], "%Y%m%d%H%M%S") + timedelta(seconds=1)
    change.update(guid="FFFFFFFF-0000-4000-8000-" + doc["guid"][-12:], appType=app_type,
                  appTime=later.strftime("%Y%m%d%H%M%S"), submitter=INTRUDER)
    change.update(fields)
    return change


@pytest.fixture(scope="module")
def sets():
    return generate(4, fault_share=0, seed=15)


def test_a_change_or_withdrawal_of_another_submitters_order_is_refused_and_changes_nothing(sets):
    order = submitted(sets[0])[0]
    for app_type, fields in (("2", {"ebcCode": INTRUDER, "acturalPaid": order["acturalPaid"] + 1}), ("3", {})):
        bucket = matcher.new_bucket(order["orderNo"])
        matcher.apply(bucket, order, 1000, TIMEOUT)
        before = copy.deepcopy(bucket)
        [refusal] = matcher.apply(bucket, foreign_change(order, app_type, **fields), 2000, TIMEOUT)
        assert refusal.code == codes.NOT_SUBMITTER and refusal.document["submitter"] == INTRUDER
        assert bucket == before  # not even the order-of-application mark moved


def test_a_second_payment_firm_cannot_replace_the_first_ones_payment(sets):
    payment = submitted(sets[0])[1]
    bucket = matcher.new_bucket(payment["orderNo"])
    matcher.apply(bucket, payment, 1000, TIMEOUT)
    before = copy.deepcopy(bucket)
    change = foreign_change(payment, "2", payCode=INTRUDER, amountPaid=Decimal("1"))
    assert [e.code for e in matcher.apply(bucket, change, 2000, TIMEOUT)] == [codes.NOT_SUBMITTER]
    assert bucket == before


def test_an_unattached_waybill_is_changed_only_by_its_submitter(sets):
    waybill = submitted(sets[0])[2]
    bucket = matcher.new_bucket(waybill["orderNo"])
    matcher.apply(bucket, waybill, 1000, TIMEOUT)
    before = copy.deepcopy(bucket)
    assert [e.code for e in matcher.apply(bucket, foreign_change(waybill, "3"), 2000, TIMEOUT)] == \
        [codes.NOT_SUBMITTER]
    assert bucket == before


def test_the_submitter_itself_may_change_and_withdraw(sets):
    order = submitted(sets[0])[0]
    bucket = matcher.new_bucket(order["orderNo"])
    matcher.apply(bucket, order, 1000, TIMEOUT)
    own = foreign_change(order, "2", submitter=order["submitter"], note="corrected")
    assert matcher.apply(bucket, own, 2000, TIMEOUT) == []
    assert matcher.documents(bucket["declarations"][0])[0]["note"] == "corrected"
    gone = foreign_change(own, "3", submitter=order["submitter"])
    assert [type(e) for e in matcher.apply(bucket, gone, 3000, TIMEOUT)] == [matcher.Withdrawn]


def test_a_document_without_submitter_compares_by_its_own_sender_field(sets):
    payment = copy.deepcopy(sets[0].payment)  # a record from before submitters
    assert "submitter" not in payment
    same = {**payment, "submitter": payment["payCode"]}
    other = {**payment, "payCode": INTRUDER, "submitter": INTRUDER}
    assert same_sender(payment, same) and same_sender(same, payment)
    assert not same_sender(payment, other) and not same_sender(other, payment)
    assert not same_sender({**payment, "submitter": "X1"}, {**payment, "submitter": "X2"})  # both carry one
    bucket = matcher.new_bucket(payment["orderNo"])
    matcher.apply(bucket, payment, 1000, TIMEOUT)
    assert [e.code for e in matcher.apply(bucket, foreign_change(payment, "2", payCode=INTRUDER), 2000, TIMEOUT)] \
        == [codes.NOT_SUBMITTER]


def test_receipts_go_to_the_submitter_else_to_the_own_sender_field(sets):
    order = copy.deepcopy(sets[0].order)
    assert receiver_of(order) == order["ebpCode"]
    assert receiver_of({**order, "submitter": order["ebcCode"]}) == order["ebcCode"]


def engine():
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=TIMEOUT, app_time_skew_ms=NO_APP_TIME_CHECK)


def run(proc, bucket, docs, start=1000):
    outputs = []
    for n, doc in enumerate(docs):
        outputs += asyncio.run(proc.on_document(bucket, copy.deepcopy(doc), start + n, f"documents.x:0:{start + n}"))
    return outputs


@pytest.mark.parametrize("app_type", ["2", "3"])
def test_the_owner_declaration_is_decided_as_if_the_intruders_change_never_came(sets, app_type):
    docs = submitted(sets[1])
    order = docs[0]
    alone = run(engine(), matcher.new_bucket(order["orderNo"]), docs)

    bucket = matcher.new_bucket(order["orderNo"])
    proc = engine()
    fields = {"ebcCode": INTRUDER, "acturalPaid": order["acturalPaid"] + 7} if app_type == "2" else {}
    outputs = run(proc, bucket, [order, foreign_change(order, app_type, **fields)] + docs[1:])
    refused = [o.record for o in outputs if o.topic == "receipts" and o.record["documentGuid"].startswith("FFFFFFFF")]
    assert [(r["receiver"], r["returnStatus"], [f["code"] for f in r["failures"]]) for r in refused] == \
        [(INTRUDER, "100", [codes.NOT_SUBMITTER])]
    assert all(o.key == INTRUDER.encode() for o in outputs if o.topic == "receipts"
               and o.record["receiver"] == INTRUDER)

    def decided(outs):
        return [(o.record["status"], o.record["taxTotal"], o.record["failures"]) for o in outs
                if o.topic == "declarations.verdicts"]

    def answers(outs):
        return sorted((o.record["receiver"], o.record["documentGuid"], o.record["returnStatus"]) for o in outs
                      if o.topic == "receipts" and o.record["receiver"] != INTRUDER)

    assert decided(outputs) == decided(alone) == [("verified", decided(alone)[0][1], [])]
    assert answers(outputs) == answers(alone)
    assert {r[0] for r in answers(alone)} == {d["submitter"] for d in docs}


def test_a_second_payment_firm_does_not_touch_the_declaration(sets):
    docs = submitted(sets[2])
    payment = docs[1]
    alone = run(engine(), matcher.new_bucket(payment["orderNo"]), docs)
    outputs = run(engine(), matcher.new_bucket(payment["orderNo"]),
                  [payment, foreign_change(payment, "2", payCode=INTRUDER, amountPaid=Decimal("1"))] + [
                      docs[0], docs[2], docs[3]])
    verdicts = [o.record["status"] for o in outputs if o.topic == "declarations.verdicts"]
    assert verdicts == [o.record["status"] for o in alone if o.topic == "declarations.verdicts"] == ["verified"]
    [refused] = [o.record for o in outputs if o.topic == "receipts" and o.record["receiver"] == INTRUDER]
    assert refused["failures"][0]["code"] == codes.NOT_SUBMITTER
