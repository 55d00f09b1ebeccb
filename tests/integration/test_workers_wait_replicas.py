"""order_match and tax_guarantee as real processes with SANDAN_REDIS_WAIT_REPLICAS=1 on a primary
and replica started by the test (issue 20): with the replica stopped, the workers do their Redis
writes on the primary and publish nothing that follows from them; once it is back, every
declaration gets its one verdict and every verified one its one guarantee outcome."""
from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
import redis

from services.common import kafka_io
from services.demo import parties
from services.order_match.decide import declaration_id
from services.tools.generator import generate

from .redis_sentinel import SentinelGroup
from .test_redis_failover import guarantee_outcomes, register
from .test_redis_wait_replicas import start_pair
from .workers import Worker, produce_documents, read_records, wait_for_verdicts, with_prefix, worker_env

pytestmark = pytest.mark.integration


def test_workers_publish_nothing_the_replica_does_not_hold(stack, topic_prefix, tmp_path, monkeypatch):
    group = SentinelGroup(tmp_path / "redis")
    try:
        primary, replica = start_pair(group)
        settings = {"SANDAN_REDIS_URL": f"redis://127.0.0.1:{primary}/0", "SANDAN_REDIS_SENTINELS": "",
                    "SANDAN_REDIS_WAIT_REPLICAS": "1", "SANDAN_REDIS_WAIT_TIMEOUT_MS": "200"}
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        prefix = f"{topic_prefix}waitrep-"
        sets = generate(30, buyers=10, fault_share="0", seed=2021)
        amounts, _short = parties.guarantee_plan(sets)
        decl_ids = {declaration_id(s.order["ebpCode"], s.order["orderNo"]) for s in sets}
        env = worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="3600", SANDAN_STORE="memory://",
                         SANDAN_TAX_GUARANTEE_METRICS_PORT="0", **settings)
        with with_prefix(prefix):
            kafka_io.create_topics()
            workers = [Worker("tax-guarantee", env, tmp_path / "guarantee.log").start(),
                       Worker("order-match", env, tmp_path / "match.log").start()]
            try:
                register(amounts)   # with the replica up: applied and published
                group.nodes[replica].send_signal(signal.SIGSTOP)
                try:
                    produce_documents([d for s in sets for d in s.documents])
                    on_primary = redis.Redis(port=primary, socket_timeout=5)
                    deadline = time.monotonic() + 60
                    # order_match has written to the primary (numbers, waybill claims, quota) ...
                    while not [k for k in on_primary.keys(f"sandan:{prefix}*") if b":guarantee:" not in k]:
                        assert time.monotonic() < deadline, "order_match wrote nothing on the primary"
                        time.sleep(0.3)
                    time.sleep(2.0)   # ... and keeps retrying its wait for the replica
                    # ... but published no verdict: only the primary holds what it decided
                    assert read_records("declarations.verdicts") == []
                    for w in workers:
                        assert w.alive(), f"worker {w.name} died while the replica was away; see {w.log}"
                finally:
                    group.nodes[replica].send_signal(signal.SIGCONT)
                verdicts = wait_for_verdicts(decl_ids, timeout_s=90, workers=workers)
                verified = {v["declarationId"] for v in verdicts if v["status"] == "verified"}
                cleared, refused = guarantee_outcomes(verified, workers, timeout_s=60)
            finally:
                for w in workers:
                    w.stop()
    finally:
        group.stop()
    assert Counter(v["declarationId"] for v in verdicts) == Counter(decl_ids)   # one verdict each
    outcomes = [v["declarationId"] for v in cleared + refused]
    assert verified and Counter(outcomes) == Counter(verified)                 # one outcome each
