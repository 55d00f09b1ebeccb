"""A zombie worker (issue 20): one of two workers of a service paused (SIGSTOP) under load past its
session timeout, the group gives its partitions to the other worker, then it is woken (SIGCONT).

The new owner's transactional producers fenced it (services/common/partition_worker.py): the
zombie's open transaction was aborted and whatever it tries after waking is refused, so it exits
70 saying so, and the supervisor (here the test) starts it again. Which way it goes is read from
Kafka the moment the zombie is stopped (DescribeTransactions of its tasks' transactional ids): a
transaction Ongoing there must end in that exit. A zombie stopped between two transactions
(after a commit, before its next output: the 200 ms commit cycle leaves such gaps at a light
load) holds nothing Kafka could abort; woken, it either tries a write and is fenced the same
way, or hears of the takeover from the group first and rejoins with fresh producers, and both
are right. The audit is the usual one:
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
import re
import subprocess
import time
from pathlib import Path

import pytest

from services.common import config, kafka_io
from tests.faults import pipeline as pipeline_mod
from tests.faults import scenario
from tests.faults.audit import CRASH_MARK
from tests.faults.pipeline import WORKERS, Plan
from tests.faults.table import TABLE

FENCED = 70
# How a woken zombie says it was fenced (worker_exit.on_fenced): also when its producer's sender
# met the fencing first and the batch loop's next send, offsets or commit only got aiokafka's
# IllegalOperation (partition_worker.fencing finds the ProducerFenced behind it).
FENCING = ("CRITICAL sandan.worker: fenced: ",)
ONGOING = "Ongoing"  # kafka-python's TransactionState value
EXIT_WAIT_S = 90  # only bounds a failure: a woken zombie learns of the takeover within seconds


def _owned(log: Path) -> list[int]:
    """The partitions (tasks) a worker was last given, from its log (partition_worker's line)."""
    found = re.findall(r"partitions \[([\d, ]*)\] assigned", log.read_text(errors="replace"))
    return [int(n) for n in found[-1].split(",") if n.strip()] if found else []


def _transactions(admin, group: str, tasks: list[int]) -> dict[int, tuple[str, int]]:
    """Each task's transaction state as its coordinator has it (Ongoing: records written, not
    ended) and the epoch of its producer (a new owner's producer bumps it: that is the fencing)."""
    described = admin.describe_transactions([f"{group}-{task}" for task in tasks])
    return {task: (str(described[f"{group}-{task}"].state.value), described[f"{group}-{task}"].producer_epoch)
            for task in tasks}


def _exit_or_rejoin(proc: subprocess.Popen, log: Path, since: int, must_exit: bool) -> int | None:
    """The woken zombie's exit code; None once it has been given partitions again (unless it had a
    transaction Kafka aborted: then only its exit ends the wait), or at the bound."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return code
        if not must_exit and b"assigned" in log.read_bytes()[since:]:
            time.sleep(2.0)  # a write it tried meanwhile would be fenced by now: give that exit a chance
            return proc.poll()
        time.sleep(0.2)
    return None


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
        admin = await asyncio.to_thread(kafka_io.admin)  # connected before the pause: read within its first second
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
            group = f"{p.prefix}sandan-{service}"
            paused = await asyncio.to_thread(_transactions, admin, group, _owned(proc.log))
            seen["tasks"] = {task: state for task, (state, _) in paused.items()}
            await asyncio.sleep(paused_s)
            # the takeover started the tasks' producers elsewhere: each epoch moved past the zombie's
            after = await asyncio.to_thread(_transactions, admin, group, list(paused))
            seen["epochs"] = {task: (paused[task][1], after[task][1]) for task in paused}
        finally:
            admin.close()
            p.faults.record(f"SIGCONT {zombie}")
            os.kill(proc.proc.pid, signal.SIGCONT)
        woken_at = proc.log.stat().st_size  # bytes of its log before the SIGCONT
        must_exit = ONGOING in seen["tasks"].values()
        seen["code"] = await asyncio.to_thread(_exit_or_rejoin, proc.proc, proc.log, woken_at, must_exit)
        if seen["code"] is None:  # rejoined (or, a failure asserted below, neither within the bound)
            seen["rejoined"] = b"assigned" in proc.log.read_bytes()[woken_at:]
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
    assert seen["tasks"] and all(after > before for before, after in seen["epochs"].values()), \
        f"{zombie}'s tasks were not taken over while it was stopped (producer epochs before, after): {seen['epochs']}"
    open_at_pause = sorted(t for t, state in seen["tasks"].items() if state == ONGOING)
    woken = f"exit {seen['code']}" if seen["code"] is not None else "rejoined its group"
    TABLE.notes.append(f"zombie: {service.replace('-', '_')} stopped with its tasks' transactions {seen['tasks']};"
                       f" woken: {woken}")
    if not open_at_pause and seen["code"] is None:
        # nothing open to abort: it heard of the takeover from the group, gave its partitions
        # back and took some again with new producers (the audit above found no stale write)
        assert seen.get("rejoined"), f"{zombie} neither exited nor rejoined its group:\n{text[-3000:]}"
        assert CRASH_MARK not in text, text[-3000:]
        return
    assert seen["code"] == FENCED, f"{zombie} exited {seen['code']}, not {FENCED} (fenced):\n{text[-3000:]}"
    critical = [line for line in text.splitlines() if CRASH_MARK in line]
    assert critical and all(any(mark in line for mark in FENCING) for line in critical), critical
