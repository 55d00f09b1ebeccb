"""A worker's wall clock jumps (issue 20): order_match's clock moved an hour forward, then to an
hour behind, while it runs (libfaketime, ``fake_clock.py``).

Expiry (the match timeout) and the quota year follow the broker's time, never the worker's: the
documents' arrival (LogAppendTime) starts the timeout and chooses the year, and the stream clock
that expires declarations moves by the broker's time of what the worker read (its own ticks
included), so a worker clock ahead expires nothing early and one behind delays nothing.
"""
from __future__ import annotations

import asyncio
import copy
import time

from services.common import config, kafka_io
from services.common.clock import now_ms
from services.order_match.decide import china_year, declaration_id
from services.tools.generator import generate
from tests.faults import scenario
from tests.faults.fake_clock import FakeClock
from tests.faults.pipeline import Plan
from tests.integration.workers import Worker, produce_documents, read_records, wait_for_verdicts, with_prefix, \
    worker_env

HOUR_S = 3600


def test_a_worker_clock_ahead_expires_nothing_early_and_behind_delays_nothing(private, topic_prefix, tmp_path):
    """An hour ahead: three documents of each declaration, then a silence longer than the idle
    time (the stream is caught up: only a clock can move expiry now), then the fourth, well
    inside the match timeout by the broker's time: verified. An hour behind: whole declarations
    verified in the broker's quota year; three documents only: incomplete once the timeout passed
    by the broker's time, not an hour later."""
    prefix = f"{topic_prefix}clock-om-"
    timeout_s = 25
    silence_s = config.get_int("SANDAN_MATCH_IDLE_SECONDS") + 4
    late = generate(20, buyers=20, fault_share=0, seed=611)
    behind = generate(20, buyers=20, fault_share=0, seed=613)
    never = generate(10, buyers=10, fault_share=0, seed=612)
    clock = FakeClock(tmp_path / "offset")
    env = clock.env(worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT=str(timeout_s), SANDAN_STORE="rocksdb://"))
    ids = {declaration_id(s.order["ebpCode"], s.order["orderNo"]): s for s in late + behind + never}
    with with_prefix(prefix):
        kafka_io.create_topics()
        worker = Worker("order-match", env, tmp_path / "worker.log").start()
        try:
            clock.set(HOUR_S)
            started = time.monotonic()
            produce_documents([copy.deepcopy(d) for s in late for d in s.documents if d["message"] != "CEB621"])
            time.sleep(silence_s)
            produce_documents([copy.deepcopy(d) for s in late for d in s.documents if d["message"] == "CEB621"])
            assert time.monotonic() - started < timeout_s - 5, "too slow to make the point: documents arrived late"
            clock.set(-HOUR_S)
            produce_documents([copy.deepcopy(d) for s in behind for d in s.documents])
            produce_documents([copy.deepcopy(d) for s in never for d in s.documents if d["message"] != "CEB621"])
            # bounds a failure only: expiry by the broker's time needs the timeout and a tick or two
            verdicts = wait_for_verdicts(set(ids), timeout_s=timeout_s + 60, workers=[worker])
        finally:
            worker.stop()
    years = {china_year(now_ms() - 120_000), china_year(now_ms())}  # the broker's year(s) during the test
    by_id = {}
    for v in verdicts:
        by_id.setdefault(v["declarationId"], set()).add((v["status"], v["quotaYear"]))
    never_ids = {declaration_id(s.order["ebpCode"], s.order["orderNo"]) for s in never}
    assert set(by_id) == set(ids), f"without a verdict: {sorted(set(ids) - set(by_id))}"
    for decl, found in sorted(by_id.items()):
        assert len(found) == 1, (decl, found)
        status, year = next(iter(found))
        if decl in never_ids:
            assert status == "incomplete", (decl, status)
        else:
            assert status == "verified" and year in years, (decl, status, year, years)


def test_clock_jumps_under_load_lose_and_misdecide_nothing(private, topic_prefix, rnd, tmp_path):
    """The whole pipeline, order_match on a clock that jumps an hour ahead, then an hour behind,
    then right again: the audit finds every verdict what the rules give (none expired early),
    every quota where the broker's year puts it."""
    clock = FakeClock(tmp_path / "offset")
    idle_s = config.get_int("SANDAN_MATCH_IDLE_SECONDS")

    async def inject(p):
        await asyncio.sleep(rnd.uniform(2.0, 4.0))
        p.faults.record("order_match clock 1 h ahead")
        clock.set(HOUR_S)
        await asyncio.sleep(idle_s + 5)
        p.faults.record("order_match clock 1 h behind")
        clock.set(-HOUR_S)
        await asyncio.sleep(idle_s + 5)
        clock.set(0)

    plan = Plan(load_s=25.0)
    pipeline = scenario.pipeline("clock", private, topic_prefix, plan)
    om = pipeline.services.procs["order-match"]
    om.env = clock.env(om.env)
    findings = scenario.run("clock jump: order_match 1 h ahead, then 1 h behind", pipeline, inject)
    assert not findings, findings.text()
    with with_prefix(pipeline.prefix):
        verdicts = read_records("declarations.verdicts")
    years = {china_year(now_ms() - 600_000), china_year(now_ms())}
    wrong = sorted({(v["declarationId"], v["quotaYear"]) for v in verdicts
                    if v["status"] == "verified" and v["quotaYear"] not in years})
    assert not wrong, f"quota years off the broker's ({years}): {wrong[:10]}"
