"""A zombie worker (issue 20): one of two workers of a service paused (SIGSTOP) under load past its
session timeout, the group gives its partitions to the other worker, then it is woken (SIGCONT).

The new owner's transactional producers fenced it (services/common/partition_worker.py): the
zombie's open transaction was aborted and whatever it tries after waking is refused, so it exits
70 saying so, and the supervisor (here the test) starts it again. The audit is the usual one:
nothing lost, decided twice or off its ledger (a stale output, changelog record or Redis effect
accepted would show as a duplicate or a balance or quota off), both rebuilds clean.

The zombie's exit is the fault's expected outcome, not a crash: the test takes it in place of
the harness's supervisor and keeps the zombie's log apart (``<name>.fenced.log``), where the
fencing (``FENCING``) is the only CRITICAL line allowed.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

from services.common import config
from tests.faults import pipeline as pipeline_mod
from tests.faults import scenario
from tests.faults.audit import CRASH_MARK
from tests.faults.pipeline import WORKERS, Plan

FENCED = 70
# How a woken zombie learns it was fenced: Kafka refuses its transaction (ProducerFenced), or
# its producer's sender met the fencing first and the batch loop's next send or commit finds the
# transaction gone (the runtime logs those two as a handler failure; exit 70 either way).
FENCING = ("fenced", "IllegalOperation(\"Can't send messages while not in transaction\")",
           "TransactionState.FATAL_ERROR")
EXIT_WAIT_S = 90  # only bounds a failure: a woken zombie learns of the takeover within seconds


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        return next(line.split()[1] for line in status if line.startswith("State:"))


@pytest.mark.parametrize("service", ["order-match", "tax-guarantee"])
def test_a_paused_worker_woken_after_a_takeover_gets_no_stale_write_accepted(service, private, topic_prefix, rnd):
    zombie = f"{service}-2"
    paused_s = config.get_int("SANDAN_SESSION_TIMEOUT") + 8  # past the session: the group moves on without it
    seen: dict = {}

    async def inject(p):
        proc = p.services.procs[zombie]
        # Well into the load: the zombie owns partitions and has transactions open most of the time.
        await asyncio.sleep(rnd.uniform(4.0, 7.0))
        p.faults.record(f"SIGSTOP {zombie}")
        p.services.down.add(zombie)  # its exit is this test's to judge, not the harness supervisor's
        os.kill(proc.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(100):  # the signal is delivered asynchronously
                seen["state"] = _state(proc.proc.pid)
                if seen["state"] == "T":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(paused_s)
        finally:
            p.faults.record(f"SIGCONT {zombie}")
            os.kill(proc.proc.pid, signal.SIGCONT)
        try:
            seen["code"] = await asyncio.to_thread(proc.proc.wait, EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            seen["code"] = None  # still running: it was not fenced (asserted below)
            proc.stop()
        fenced_log = proc.log.with_name(f"{zombie}.fenced.log")
        proc.log.rename(fenced_log)
        seen["log"] = fenced_log
        p.services.start(zombie)  # the supervisor's restart: it joins the group again

    plan = Plan(count=300, load_s=25.0, workers={**{name: 1 for name in WORKERS}, service: 2},
                **scenario.LONG_OUTAGE)
    pipeline = scenario.pipeline(f"zombie-{service}", private, topic_prefix, plan)
    findings = scenario.run(f"zombie: {service.replace('-', '_')} paused past its session, woken", pipeline,
                            inject)
    log = seen.get("log")
    if log is not None:  # the zombie's own log, scanned for personal data with the others
        run = pipeline_mod.RUNS[-1]
        pipeline_mod.RUNS[-1] = pipeline_mod.Run([*run.logs, log], run.tokens, run.documents)
    assert not findings, findings.text()
    assert seen.get("state") == "T", f"{zombie} was not stopped by SIGSTOP: {seen}"
    text = log.read_text(errors="replace")
    assert seen["code"] == FENCED, f"{zombie} exited {seen['code']}, not {FENCED} (fenced):\n{text[-3000:]}"
    critical = [line for line in text.splitlines() if CRASH_MARK in line]
    assert critical and all(any(mark in line for mark in FENCING) for line in critical), critical
