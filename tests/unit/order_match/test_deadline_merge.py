"""At a deadline, the documents of an order number that could not join the declaration holding
its order (another ebpCode, another waybill number) join it when together they make exactly one
set, and the rules name the mismatch (DOMAIN §2 PAYMENT_REFERENCE, INVENTORY_PARTIES)."""
from __future__ import annotations

import asyncio
import copy

import pytest

from services.common import codes
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry
from services.tools.generator import generate

TIMEOUT = 60_000
OTHER_PLATFORM = "3301960000"


@pytest.fixture
def docs():
    return dict(zip(("order", "payment", "logistics", "inventory"),
                    (copy.deepcopy(d) for d in generate(1, fault_share=0, seed=3)[0].documents)))


def engine() -> MatchProcessor:
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=TIMEOUT, app_time_skew_ms=10**15)


def feed(proc, bucket, timed):
    outputs = []
    for doc, at in timed:
        outputs += asyncio.run(proc.on_document(bucket, doc, at))
    return outputs


def verdicts(outputs):
    return [(o.record["ebpCode"], o.record["status"], [(f["code"], f["field"]) for f in o.record["failures"]])
            for o in outputs if o.topic == "declarations.verdicts"]


def receipts(outputs):
    return {o.record["documentGuid"]: o.record["returnStatus"] for o in outputs if o.topic == "receipts"}


def test_a_payment_of_another_platform_arriving_later_joins_at_the_orders_deadline(docs):
    docs["payment"]["ebpCode"] = OTHER_PLATFORM
    proc, bucket = engine(), matcher.new_bucket(docs["order"]["orderNo"])
    assert feed(proc, bucket, [(docs["order"], 1000), (docs["logistics"], 2000), (docs["inventory"], 3000),
                               (docs["payment"], 30_000)]) == []  # keyed apart: nothing to decide yet
    assert len(bucket["declarations"]) == 2
    assert asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT - 1, 1000 + TIMEOUT - 1)) == []
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT, "order_match.ticks:0:7"))
    assert verdicts(out) == [(docs["order"]["ebpCode"], "rejected", [(codes.PAYMENT_REFERENCE, "PaymentHead/ebpCode")])]
    assert receipts(out) == {d["guid"]: "100" for d in docs.values()}  # every sender hears of it
    assert [d["ebpCode"] for d in bucket["declarations"]] == [docs["order"]["ebpCode"]]
    assert matcher.next_deadline(bucket, TIMEOUT) is None  # nothing left to expire
    again = asyncio.run(proc.replay(bucket, "order_match.ticks:0:7", 1000 + TIMEOUT))  # a crash before the commit
    assert verdicts(again) == verdicts(out) and receipts(again) == receipts(out)


def test_an_inventory_of_another_platform_brings_its_waybill(docs):
    docs["inventory"]["ebpCode"] = OTHER_PLATFORM
    proc, bucket = engine(), matcher.new_bucket(docs["order"]["orderNo"])
    feed(proc, bucket, [(d, 1000 + i) for i, d in enumerate(docs.values())])
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT))
    assert verdicts(out) == [(docs["order"]["ebpCode"], "rejected", [(codes.INVENTORY_PARTIES, "InventoryHead/ebpCode")])]
    assert set(receipts(out)) == {d["guid"] for d in docs.values()}


def test_two_open_orders_of_the_order_number_are_not_guessed_between(docs):
    docs["payment"]["ebpCode"] = OTHER_PLATFORM
    second_order = dict(docs["order"], ebpCode="3301960001", guid="0000000C-0000-4000-8000-000000000001")
    proc, bucket = engine(), matcher.new_bucket(docs["order"]["orderNo"])
    feed(proc, bucket, [(d, 1000) for d in (*docs.values(), second_order)])
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT))
    assert sorted(v[:2] for v in verdicts(out)) == [("3301960000", "incomplete"), ("3301960001", "incomplete"),
                                                    (docs["order"]["ebpCode"], "incomplete")]


def test_a_declaration_with_a_kind_the_orders_has_stays_apart(docs):
    # the order's own declaration has its payment: another platform's payment is not a candidate,
    # and the waybill naming another number joins alone
    other = dict(docs["payment"], ebpCode=OTHER_PLATFORM, guid="0000000D-0000-4000-8000-000000000001")
    docs["inventory"]["logisticsNo"] = "OTHER00000001"
    proc, bucket = engine(), matcher.new_bucket(docs["order"]["orderNo"])
    feed(proc, bucket, [(d, 1000) for d in (*docs.values(), other)])
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT))
    assert sorted(verdicts(out)) == [
        (OTHER_PLATFORM, "incomplete", [(codes.INCOMPLETE, h) for h in ("OrderHead", "LogisticsHead", "InventoryHead")]),
        (docs["order"]["ebpCode"], "rejected", [(codes.INVENTORY_PARTIES, "InventoryHead/logisticsNo")])]


def test_two_candidates_of_a_kind_are_not_guessed_between(docs):
    first = dict(docs["payment"], ebpCode=OTHER_PLATFORM)
    second = dict(docs["payment"], ebpCode="3301960001", guid="0000000E-0000-4000-8000-000000000001")
    proc, bucket = engine(), matcher.new_bucket(docs["order"]["orderNo"])
    feed(proc, bucket, [(d, 1000) for d in (docs["order"], first, second, docs["logistics"], docs["inventory"])])
    out = asyncio.run(proc.close_due(bucket, 1000 + TIMEOUT, 1000 + TIMEOUT))
    assert sorted(v[:2] for v in verdicts(out)) == [(OTHER_PLATFORM, "incomplete"), ("3301960001", "incomplete"),
                                                    (docs["order"]["ebpCode"], "incomplete")]
