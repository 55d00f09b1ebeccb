"""A worker killed after writing its state but before its outputs were acknowledged: the
redelivered input record makes the engine emit the lost decision again, a genuine duplicate
(another record) does not."""
from __future__ import annotations

import asyncio
import copy

from services.tools.generator import generate
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

NO_APP_TIME_CHECK = 10**15  # these clocks start in 1970, before every appTime (APP_TIME: test_app_time.py)


def engine(quota=None):
    return MatchProcessor(quota=quota or MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=60_000, replay_window_ms=3_600_000,
                          app_time_skew_ms=NO_APP_TIME_CHECK)


def verdicts(outputs):
    return [o.record for o in outputs if o.topic == "declarations.verdicts"]


def run_all(proc, bucket, docs):
    outputs = []
    for offset, doc in enumerate(docs):
        outputs += asyncio.run(proc.on_document(bucket, copy.deepcopy(doc), 1000 + offset, f"documents.x:0:{offset}"))
    return outputs


def test_the_replayed_record_emits_its_verdict_again_and_counts_the_quota_once():
    s = generate(1, fault_share=0, seed=31)[0]
    quota = MemoryQuotaStore()
    proc = engine(quota)
    bucket = matcher.new_bucket(s.order["orderNo"])
    first = verdicts(run_all(proc, bucket, s.documents))
    assert [v["status"] for v in first] == ["verified"]
    # the crash: state kept, outputs lost; the last record comes again at the same position
    again = verdicts(asyncio.run(proc.on_document(bucket, copy.deepcopy(s.inventory), 9000, "documents.x:0:3")))
    assert [(v["declarationId"], v["status"], v["taxTotal"]) for v in again] == \
        [(v["declarationId"], v["status"], v["taxTotal"]) for v in first]
    buyer_year = next(iter(quota._held))
    assert len(quota._held[buyer_year]) == 1  # reserved once


def test_a_duplicate_from_another_position_stays_silent():
    s = generate(1, fault_share=0, seed=32)[0]
    proc = engine()
    bucket = matcher.new_bucket(s.order["orderNo"])
    run_all(proc, bucket, s.documents)
    assert asyncio.run(proc.on_document(bucket, copy.deepcopy(s.inventory), 9000, "documents.x:0:99")) == []


def test_an_expiry_replayed_by_its_tick_emits_the_incomplete_verdict_again():
    s = generate(1, fault_share=0, seed=33)[0]
    proc = engine()
    bucket = matcher.new_bucket(s.order["orderNo"])
    run_all(proc, bucket, [s.order, s.payment])
    first = verdicts(proc.expire(bucket, 10**9, position="order_match.ticks:0:5"))
    assert [v["status"] for v in first] == ["incomplete"]
    again = verdicts(asyncio.run(proc.replay(bucket, "order_match.ticks:0:5", 10**9)))
    assert [(v["status"], v["missing"]) for v in again] == [(v["status"], v["missing"]) for v in first]
    assert proc.expire(bucket, 10**9 + 1, position="order_match.ticks:0:6") == []
