"""Only a document's submitter may change (appType 2) or withdraw (appType 3) it: another
enterprise's attempt is refused NOT_SUBMITTER, answered to that enterprise, and the owner's
declaration goes on as if it never came. Receipts go to each document's submitter."""
from __future__ import annotations

import asyncio
import copy
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal

import fastavro
import pytest

from services.tools.generator import generate
from services.common.avro import MAGIC, SCHEMA_DIR, SUPERSEDED, codec
from services.common.senders import same_sender, stamp
from services.common import codes
from services.order_match import matcher
from services.order_match.bucket_store import copy_bucket
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


# --- empty slots: what another enterprise sends before the owner's document is there ---------

def decided(outs):
    return [(o.record["status"], o.record["taxTotal"], o.record["failures"]) for o in outs
            if o.topic == "declarations.verdicts"]


def owners_answers(outs):
    return sorted((o.record["receiver"], o.record["documentGuid"], o.record["returnStatus"]) for o in outs
                  if o.topic == "receipts" and o.record["receiver"] != INTRUDER)


def intruders_answers(outs):
    return [(o.record["documentGuid"][:8], o.record["returnStatus"], [f["code"] for f in o.record["failures"]])
            for o in outs if o.topic == "receipts" and o.record["receiver"] == INTRUDER]


@pytest.mark.parametrize("kind_index", [0, 1, 3])
def test_a_foreign_withdrawal_of_an_empty_slot_does_not_supersede_the_owners_document(sets, kind_index):
    """The intruder's withdrawal, dated after the owner's document, arrives first: it is
    NOT_FOUND and its mark is its own; the owner's earlier-dated document still applies."""
    docs = submitted(sets[1])
    alone = run(engine(), matcher.new_bucket(docs[0]["orderNo"]), docs)
    outputs = run(engine(), matcher.new_bucket(docs[0]["orderNo"]), [foreign_change(docs[kind_index], "3")] + docs)
    assert intruders_answers(outputs) == [("FFFFFFFF", "100", [codes.NOT_FOUND])]
    assert decided(outputs) == decided(alone) == [("verified", decided(alone)[0][1], [])]
    assert owners_answers(outputs) == owners_answers(alone)


def test_the_owners_own_withdrawal_first_still_supersedes_its_original(sets):
    """Marks still hold within one submitter: the withdrawal that overtook its original wins."""
    docs = submitted(sets[1])
    own = foreign_change(docs[0], "3", submitter=docs[0]["submitter"])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    outputs = run(engine(), bucket, [own] + docs)
    assert decided(outputs) == []
    assert matcher.missing_kinds(bucket, bucket["declarations"][0]) == ["order"]
    assert matcher.mark_of(bucket["declarations"][0]["marks"], "order", docs[0]["submitter"]) == \
        matcher.order_key(own)


@pytest.mark.parametrize("kind_index", [0, 1, 3])
def test_a_foreign_change_of_an_empty_slot_completes_nothing_and_yields_to_the_owners_original(sets, kind_index):
    """The intruder's appType 2 arrives before the owner's original: it is held as an orphan
    that decides nothing; the owner's original takes the slot, the intruder is answered
    NOT_SUBMITTER, and the declaration is decided on the owner's documents alone."""
    docs = submitted(sets[1])
    original = docs[kind_index]
    alone = run(engine(), matcher.new_bucket(original["orderNo"]), docs)
    change = foreign_change(original, "2", note="not yours")
    others = [d for d in docs if d is not original]
    bucket = matcher.new_bucket(original["orderNo"])
    proc = engine()
    before = run(proc, bucket, [change] + others)
    assert decided(before) == [] and intruders_answers(before) == []
    assert matcher.missing_kinds(bucket, bucket["declarations"][0]) == [matcher.DECLARATION_KINDS[kind_index]]
    after = run(proc, bucket, [original], start=2000)
    assert intruders_answers(after) == [("FFFFFFFF", "100", [codes.NOT_SUBMITTER])]
    assert decided(after) == decided(alone) == [("verified", decided(alone)[0][1], [])]
    assert owners_answers(before + after) == owners_answers(alone)
    assert matcher.documents(bucket["declarations"][0])[kind_index]["guid"] == original["guid"]


def test_a_foreign_change_of_an_unattached_waybill_yields_to_the_carriers_original(sets):
    docs = submitted(sets[1])
    waybill = docs[2]
    alone = run(engine(), matcher.new_bucket(waybill["orderNo"]), docs)
    change = foreign_change(waybill, "2", logisticsCode=INTRUDER)
    change["logisticsCode"] = waybill["logisticsCode"]  # the same slot: the key the inventory names
    bucket = matcher.new_bucket(waybill["orderNo"])
    outputs = run(engine(), bucket, [change, waybill, docs[0], docs[1], docs[3]])
    assert intruders_answers(outputs) == [("FFFFFFFF", "100", [codes.NOT_SUBMITTER])]
    assert decided(outputs) == decided(alone) == [("verified", decided(alone)[0][1], [])]
    assert owners_answers(outputs) == owners_answers(alone)


def test_an_orphan_change_stands_once_its_own_submitters_original_comes(sets):
    """The owner's own change first (same appTime), then the other documents: nothing is
    decided until the original it changes arrives (SUPERSEDED), then the change is decided."""
    docs = submitted(sets[1])
    payment = docs[1]
    change = foreign_change(payment, "2", submitter=payment["submitter"], appTime=payment["appTime"])
    bucket = matcher.new_bucket(payment["orderNo"])
    proc = engine()
    assert decided(run(proc, bucket, [change, docs[0], docs[2], docs[3]])) == []
    decl = bucket["declarations"][0]
    assert decl["orphanChanges"] == ["payment"] and matcher.missing_kinds(bucket, decl) == ["payment"]
    outputs = run(proc, bucket, [payment], start=2000)
    superseded = [o.record for o in outputs if o.topic == "receipts" and o.record["documentGuid"] == payment["guid"]]
    assert [r["failures"][0]["code"] for r in superseded] == [codes.SUPERSEDED]
    assert [s for s, _, _ in decided(outputs)] == ["verified"] and decl["orphanChanges"] == []
    assert matcher.documents(decl)[1]["guid"] == change["guid"]


def test_an_orphan_change_alone_expires_incomplete_naming_its_kind(sets):
    docs = submitted(sets[1])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    matcher.apply(bucket, foreign_change(docs[0], "2"), 1000, TIMEOUT)
    for d in docs[1:]:
        matcher.apply(bucket, d, 1001, TIMEOUT)
    [decl] = matcher.expired(bucket, 1000 + TIMEOUT)
    assert matcher.missing_kinds(bucket, decl) == ["order"]


def test_marks_by_submitter_and_orphans_travel_in_the_bucket_record_and_copies(sets):
    docs = submitted(sets[1])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    matcher.apply(bucket, foreign_change(docs[0], "3"), 1000, TIMEOUT)
    matcher.apply(bucket, foreign_change(docs[1], "2"), 1001, TIMEOUT)
    matcher.apply(bucket, docs[0], 1002, TIMEOUT)
    matcher.apply(bucket, foreign_change(docs[2], "2"), 1003, TIMEOUT)
    name, back = codec().decode(codec().encode("sandan.MatchBucket", bucket))
    assert name == "sandan.MatchBucket" and back == bucket
    decl = back["declarations"][0]
    assert set(decl["marks"]["order"]) == {INTRUDER, docs[0]["submitter"]}
    assert decl["orphanChanges"] == ["payment"] and back["waybills"][0]["orphan"] is True
    copied = copy_bucket(back)
    copied["declarations"][0]["marks"]["order"][INTRUDER] = "x"
    copied["declarations"][0]["orphanChanges"].clear()
    assert decl["marks"]["order"][INTRUDER] != "x" and decl["orphanChanges"] == ["payment"]


def test_a_bucket_of_version_4_reads_and_its_plain_marks_hold_for_every_submitter(sets):
    schema = json.loads((SCHEMA_DIR / SUPERSEDED / "matchBucket.v4.avsc").read_text(encoding="utf-8"))
    assert schema["sandan.version"] == 4
    order = submitted(sets[1])[0]
    later = foreign_change(order, "3")["appTime"] + " 3"
    decl = {**matcher._new_declaration(order["ebpCode"], 1, TIMEOUT), "marks": {"order": later}}
    del decl["orphanChanges"]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema),
                               {"orderNo": order["orderNo"], "declarations": [decl], "waybills": []})
    tag = b"sandan.MatchBucket/4"
    _, bucket = codec().decode(bytes([MAGIC, len(tag)]) + tag + body.getvalue())
    assert bucket["declarations"][0]["marks"] == {"order": later}
    assert bucket["declarations"][0]["orphanChanges"] == []
    [refusal] = matcher.apply(bucket, order, 2000, TIMEOUT)  # a mark from before submitters binds everyone
    assert refusal.code == codes.SUPERSEDED
    own = foreign_change(order, "3", submitter=order["submitter"], appTime=str(int(order["appTime"]) + 5))
    matcher.apply(bucket, own, 2001, TIMEOUT)
    assert bucket["declarations"][0]["marks"]["order"] == {"": later, order["submitter"]: matcher.order_key(own)}
    codec().encode("sandan.MatchBucket", bucket)
