"""Every waybill is answered (a receipt to its carrier), whatever became of its order number's
declarations: with the declaration that counted it, or on its own once no declaration is open
to name it, after its own match timeout."""
from __future__ import annotations

import asyncio
import copy

import pytest

from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry
from services.tools.generator import generate

TIMEOUT = 60_000


@pytest.fixture
def documents():
    return [copy.deepcopy(d) for d in generate(1, fault_share=0, seed=3)[0].documents]


def engine() -> MatchProcessor:
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=TIMEOUT, app_time_skew_ms=10**15)


def feed(proc, bucket, docs, now):
    outputs = []
    for doc in docs:
        outputs += asyncio.run(proc.on_document(bucket, doc, now))
    return outputs


def answered(outputs) -> dict[str, str]:
    """Receipts by the guid they answer: status."""
    return {o.record["documentGuid"]: o.record["returnStatus"] for o in outputs if o.topic == "receipts"}


def verdicts(outputs):
    return [(o.record["ebpCode"], o.record["status"], o.record["missing"]) for o in outputs
            if o.topic == "declarations.verdicts"]


def test_the_declaration_that_counted_the_waybill_answers_it_with_its_verdict(documents):
    order, payment, waybill, _ = documents
    proc, bucket = engine(), matcher.new_bucket(order["orderNo"])
    feed(proc, bucket, [waybill, order, payment], 1000)
    out = proc.expire(bucket, 1000 + TIMEOUT)
    assert verdicts(out) == [(order["ebpCode"], "incomplete", ["inventory"])]
    assert set(answered(out)) == {order["guid"], payment["guid"], waybill["guid"]}
    assert bucket["waybills"] == []
    # and a replay of that decision (a crash before its outputs were acknowledged) answers it again
    bucket["declarations"][0]["decidedBy"] = "order_match.ticks:0:9"
    again = asyncio.run(proc.replay(bucket, "order_match.ticks:0:9", 1000 + TIMEOUT))
    assert set(answered(again)) == set(answered(out))


def test_at_the_deadline_the_lone_waybill_naming_another_number_decides_the_declaration(documents):
    # DOMAIN §2 INVENTORY_PARTIES: the inventory names another number than its order number's waybill
    order, payment, waybill, inventory = documents
    inventory["logisticsNo"] = "OTHER00000001"
    proc, bucket = engine(), matcher.new_bucket(order["orderNo"])
    feed(proc, bucket, [order, payment, inventory], 1000)
    feed(proc, bucket, [waybill], 2000)
    assert [e["guid"] for e in bucket["waybills"]] == [waybill["guid"]]
    # the declaration is open until its deadline: the waybill waits (its inventory may be corrected)
    assert matcher.next_deadline(bucket, TIMEOUT) == 1000 + TIMEOUT
    assert asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT - 1, 1000 + TIMEOUT - 1)) == []
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT, "order_match.ticks:0:4"))
    assert verdicts(out) == [(order["ebpCode"], "rejected", [])]
    [verdict] = [o.record for o in out if o.topic == "declarations.verdicts"]
    assert [(f["code"], f["field"]) for f in verdict["failures"]] == [("INVENTORY_PARTIES", "InventoryHead/logisticsNo")]
    assert answered(out) == {d["guid"]: "100" for d in (order, payment, waybill, inventory)}
    assert bucket["waybills"] == [] and matcher.next_deadline(bucket, TIMEOUT) is None
    # a replay of the tick that decided it (a crash before its outputs were acknowledged) decides it again
    again = asyncio.run(proc.replay(bucket, "order_match.ticks:0:4", 1000 + TIMEOUT))
    assert verdicts(again) == verdicts(out) and answered(again) == answered(out)


def test_the_corrected_inventory_takes_back_the_waybill_it_names(documents):
    # decided with the lone waybill, then the inventory is corrected to name it: verified
    order, payment, waybill, inventory = documents
    wrong = dict(inventory, logisticsNo="OTHER00000001")
    proc, bucket = engine(), matcher.new_bucket(order["orderNo"])
    feed(proc, bucket, [order, payment, wrong, waybill], 1000)
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT))
    assert verdicts(out) == [(order["ebpCode"], "rejected", [])]
    corrected = dict(inventory, guid="C" * 36, appType="2")
    out = feed(proc, bucket, [corrected], 2000 + TIMEOUT)
    assert verdicts(out) == [(order["ebpCode"], "verified", [])]


def test_two_waybills_no_inventory_names_are_answered_on_their_own_after_their_timeout(documents):
    order, payment, waybill, inventory = documents
    inventory["logisticsNo"] = "OTHER00000001"
    second = dict(copy.deepcopy(waybill), guid="B" * 36, logisticsNo="OTHER00000002")
    proc, bucket = engine(), matcher.new_bucket(order["orderNo"])
    feed(proc, bucket, [order, payment, inventory], 1000)
    feed(proc, bucket, [waybill, second], 2000)
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT))
    assert verdicts(out) == [(order["ebpCode"], "incomplete", ["logistics"])]  # which one? neither is taken
    assert not set(answered(out)) & {waybill["guid"], second["guid"]}
    assert matcher.next_deadline(bucket, TIMEOUT) == 2000 + TIMEOUT
    assert proc.expire(bucket, 2000 + TIMEOUT - 1) == []
    out = proc.expire(bucket, 2000 + TIMEOUT)
    assert verdicts(out) == [("", "incomplete", ["inventory"])] * 2
    assert set(answered(out)) == {waybill["guid"], second["guid"]} and bucket["waybills"] == []


def test_a_second_waybill_after_the_verdict_is_answered_too(documents):
    order, payment, waybill, inventory = documents
    proc, bucket = engine(), matcher.new_bucket(order["orderNo"])
    out = feed(proc, bucket, [order, payment, waybill, inventory], 1000)
    assert verdicts(out) == [(order["ebpCode"], "verified", [])]
    other = dict(copy.deepcopy(waybill), guid="B" * 36, logisticsNo="OTHER00000002")
    feed(proc, bucket, [other], 5000)
    out = proc.expire(bucket, 5000 + TIMEOUT)
    assert list(answered(out)) == [other["guid"]] and answered(out)[other["guid"]] == "100"  # rejected
