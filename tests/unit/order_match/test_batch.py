"""Documents taken in batches (services/order_match/batch.py) give exactly the outputs and the
state of taking them one by one: the stream worker's batching must not change any verdict."""
from __future__ import annotations

import asyncio
import copy
import random

import pytest

from services.tools.generator import generate
from services.order_match import batch, matcher
from services.order_match.batch import Arrival
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

NO_APP_TIME_CHECK = 10**15  # these clocks start in 1970, before every appTime (APP_TIME: test_app_time.py)

NOW = 1_000_000


def engine() -> MatchProcessor:
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=60_000,
                          app_time_skew_ms=NO_APP_TIME_CHECK)


def stream_of_documents(seed: int) -> list[dict]:
    """Shuffled sets (one buyer for several, so quota order matters), each followed at random
    by a redelivery, a change after completion (LOCKED) or a repeated appType 1 (DUPLICATE)."""
    rnd = random.Random(seed)
    sets = generate(30, buyers=3, fault_share="0.2", seed=seed)
    docs = [copy.deepcopy(d) for s in sets for d in s.documents]
    rnd.shuffle(docs)
    extra = []
    for doc in rnd.sample(docs, 25):
        again = copy.deepcopy(doc)
        trick = rnd.randrange(3)
        if trick == 1:
            again["guid"], again["appType"] = f"{rnd.randrange(10**12):036d}", "2"
        elif trick == 2:
            again["guid"] = f"{rnd.randrange(10**12):036d}"
        extra.append(again)
    for doc in extra:  # soon after its declaration's last document: often in the same batch
        last = max(i for i, d in enumerate(docs) if d["orderNo"] == doc["orderNo"])
        docs.insert(last + 1 + rnd.randrange(4), doc)
    return [matcher.document(matcher.wire_record(doc)) for doc in docs]  # as they come off Kafka


def comparable(outputs) -> dict[str, list[tuple]]:
    """Outputs by order number, in their order (across order numbers a batch may publish in
    another order, as Kafka keeps no order across keys either), without what is random by
    design (a receipt's own guid)."""
    by_order: dict[str, list[tuple]] = {}
    for o in outputs:
        record = {k: v for k, v in o.record.items() if not (o.topic == "receipts" and k == "guid")}
        by_order.setdefault(o.record["orderNo"], []).append((o.topic, o.key, record))
    return by_order


def one_by_one(docs: list[dict]) -> tuple[dict, dict]:
    proc, buckets, outputs = engine(), {}, []
    for offset, doc in enumerate(docs):
        key = doc["orderNo"].strip()
        bucket = buckets.setdefault(key, matcher.new_bucket(key))
        outputs += asyncio.run(proc.on_document(bucket, copy.deepcopy(doc), NOW, f"documents.x:0:{offset}"))
    return comparable(outputs), buckets


def in_batches(docs: list[dict], size: int) -> tuple[dict, dict]:
    proc, table, outputs = engine(), {}, []
    arrivals = [Arrival(doc["orderNo"].strip(), doc, matcher.wire_record(doc), f"documents.x:0:{offset}", NOW)
                for offset, doc in enumerate(docs)]

    def load(arrival: Arrival) -> dict:
        return copy.deepcopy(table.get(arrival.key) or matcher.new_bucket(arrival.key))

    for start in range(0, len(arrivals), size):
        done = asyncio.run(batch.run(proc, arrivals[start:start + size], load, NOW))
        outputs += done.outputs
        table.update({key: bucket for key, (bucket, _) in done.buckets.items()})
    return comparable(outputs), table


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 7, 500])
def test_batches_give_the_outputs_and_state_of_one_by_one(seed, size):
    docs = stream_of_documents(seed)
    expected_outputs, expected_state = one_by_one(docs)
    outputs, state = in_batches(docs, size)
    assert outputs == expected_outputs
    assert state == expected_state
    codes = {f["code"] for listed in outputs.values() for _, _, rec in listed for f in rec.get("failures", ())}
    assert {"LOCKED", "DUPLICATE"} <= codes  # the stream does exercise documents after a verdict


def test_a_document_after_a_completion_in_the_same_batch_meets_the_verdict():
    s = generate(1, fault_share=0, seed=9)[0]
    change = copy.deepcopy(s.payment)
    change["guid"], change["appType"] = "A" * 36, "2"
    outputs, _ = in_batches([matcher.document(matcher.wire_record(d)) for d in (*s.documents, change)], size=10)
    receipts = [rec for topic, _, rec in outputs[s.order["orderNo"]] if topic == "receipts"]
    assert [rec["returnStatus"] for rec in receipts if rec["documentGuid"] == "A" * 36] == ["100"]
    assert any(f["code"] == "LOCKED" for rec in receipts for f in rec["failures"])


def _sharing_a_waybill() -> list[dict]:
    """A's order and inventory (no payment, no waybill: it will expire INCOMPLETE), then B's whole
    set naming the same carrier number."""
    first, second = generate(2, fault_share=0, seed=9)
    docs = [copy.deepcopy(first.order), copy.deepcopy(first.inventory)]
    later = str(int(max(d["appTime"] for d in docs)) + 1)  # a second later (not at :59 for this seed)
    for doc in (copy.deepcopy(d) for d in second.documents):
        if doc["message"] in ("CEB511", "CEB621"):
            doc["logisticsCode"], doc["logisticsNo"] = first.logistics["logisticsCode"], first.logistics["logisticsNo"]
        doc["appTime"] = later  # sent after A's, as they arrive
        docs.append(doc)
    return [matcher.document(matcher.wire_record(doc)) for doc in docs]


@pytest.mark.parametrize("size", [1, 3, 10])
def test_the_first_inventory_to_name_a_waybill_claims_it_in_batches_as_one_by_one(size):
    docs = _sharing_a_waybill()
    outputs, _ = in_batches(docs, size)
    assert outputs == one_by_one(docs)[0]
    [verdict] = [rec for topic, _, rec in outputs[docs[-1]["orderNo"]] if topic == "declarations.verdicts"]
    assert verdict["status"] == "rejected" and [f["code"] for f in verdict["failures"]] == ["WAYBILL_REUSED"]


def test_a_failed_batch_leaves_no_claim_behind_for_the_next_attempt():
    docs = _sharing_a_waybill()
    proc = engine()
    proc.take(matcher.new_bucket(docs[3]["orderNo"]), docs[-1], NOW)  # B's inventory taken, then the batch failed
    assert proc.claims_pending
    arrivals = [Arrival(doc["orderNo"].strip(), doc, matcher.wire_record(doc), f"documents.x:0:{offset}", NOW)
                for offset, doc in enumerate(docs)]
    done = asyncio.run(batch.run(proc, arrivals, lambda a: matcher.new_bucket(a.key), NOW))
    [verdict] = [o.record for o in done.outputs if o.topic == "declarations.verdicts"]
    assert [f["code"] for f in verdict["failures"]] == ["WAYBILL_REUSED"]  # A named it first, as in the retry
