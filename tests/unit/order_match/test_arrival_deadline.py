"""INCOMPLETE means the four documents did not all *arrive* within the match timeout (DOMAIN §2):
the deadline counts from arrival times (the broker's), not from when the worker got round to
a document, so a worker that was down or behind decides as one that kept up."""
from __future__ import annotations

import asyncio
import copy

from services.tools.generator import generate
from services.order_match import batch, matcher
from services.order_match.batch import Arrival
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

NO_APP_TIME_CHECK = 10**15  # these clocks start in 1970, before every appTime (APP_TIME: test_app_time.py)

TIMEOUT = 60_000
HOUR = 3_600_000


def engine() -> MatchProcessor:
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=TIMEOUT, replay_window_ms=HOUR,
                          app_time_skew_ms=NO_APP_TIME_CHECK)


def take(proc, buckets, docs_at, now):
    """Feed (document, arrival time, offset) as one batch processed at ``now``; the verdicts."""
    def load(arrival):
        return buckets.setdefault(arrival.key, matcher.new_bucket(arrival.key))

    arrivals = [Arrival(doc["orderNo"], copy.deepcopy(doc), matcher.wire_record(doc), f"documents.x:0:{offset}", at)
                for doc, at, offset in docs_at]
    done = asyncio.run(batch.run(proc, arrivals, load, now))
    return [o.record for o in done.outputs if o.topic == "declarations.verdicts"]


def test_documents_that_arrived_in_time_verify_however_late_the_worker_reads_them():
    s = generate(1, fault_share=0, seed=41)[0]
    proc, buckets = engine(), {}
    arrivals = [(doc, 1_000 + i * 10_000, i) for i, doc in enumerate(s.documents)]  # within 30 s of each other
    verdicts = take(proc, buckets, arrivals, now=1_000 + 5 * HOUR)  # read five hours later
    assert [v["status"] for v in verdicts] == ["verified"]


def test_the_deadline_counts_from_the_first_arrival_not_from_processing():
    s = generate(1, fault_share=0, seed=42)[0]
    proc, buckets = engine(), {}
    take(proc, buckets, [(s.documents[0], 1_000, 0)], now=9 * HOUR)
    decl = buckets[s.order["orderNo"]]["declarations"][0]
    assert (decl["firstAt"], decl["deadline"]) == (1_000, 1_000 + TIMEOUT)


def test_a_document_arriving_after_the_deadline_makes_the_declaration_incomplete_even_before_a_tick():
    s = generate(1, fault_share=0, seed=43)[0]
    proc, buckets = engine(), {}
    first = [(doc, 1_000 + i, i) for i, doc in enumerate(s.documents[:3])]
    late = (s.documents[3], 1_000 + TIMEOUT + 1, 3)
    verdicts = take(proc, buckets, first + [late], now=2 * HOUR)
    assert [v["status"] for v in verdicts] == ["incomplete"]
    decl = buckets[s.order["orderNo"]]["declarations"][0]
    assert decl["decidedBy"] == "documents.x:0:3"  # replayed if that record comes again after a crash


def test_a_document_arriving_on_the_deadline_edge_is_in_time_when_the_deadline_is_later():
    s = generate(1, fault_share=0, seed=44)[0]
    proc, buckets = engine(), {}
    docs = [(doc, 1_000 + i, i) for i, doc in enumerate(s.documents[:3])] + [(s.documents[3], 1_000 + TIMEOUT - 1, 3)]
    assert [v["status"] for v in take(proc, buckets, docs, now=2 * HOUR)] == ["verified"]
