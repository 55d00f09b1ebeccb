"""A zombie worker (issue 20): one of two workers of a service paused (SIGSTOP) under load past its
session timeout, the group gives its partitions to the other worker, then it is woken (SIGCONT).

In scope partition the new owner's transactional producers fenced it
(services/common/partition_worker.py): the zombie's open transaction was aborted and whatever it
tries after waking is refused: it exits 70 saying so, and the supervisor (here the test) starts
it again. In scope worker (the default) nothing of the new owner's touches the zombie's producer:
its transaction stays open while it is stopped, and woken, its offsets are refused by the group
coordinator (its generation is over), it aborts the transaction itself, drops what it handled
since its last commit and joins the group again without exiting. Which way it goes is read from
Kafka the moment the zombie is stopped (DescribeTransactions of its transactional ids): a
transaction Ongoing there must end in that exit (partition) or that drop (worker). A stop that
caught the zombie between two transactions (after a commit, before its next output: the 200 ms
commit cycle leaves such gaps at a light load) is undone at once and tried again, so the pause
that stays is nearly always mid-transaction; if none of the tries is, the zombie holds nothing
Kafka could abort and, woken, either tries a write and is fenced the same way, or hears of the
takeover from the group first and rejoins with fresh producers, and both are right.
The audit is the usual one: nothing lost, decided twice or off its ledger (a stale output,
changelog record or Redis effect accepted would show as a duplicate or a balance or quota off),
both rebuilds clean.

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
DROPPED = b"joins its group again"  # scope worker: partition_worker._lose_all's line
ONGOING = "Ongoing"  # kafka-python's TransactionState value
EXIT_WAIT_S = 90  # only bounds a failure: a woken zombie learns of the takeover within seconds
STOP_TRIES = 40  # stops undone while the zombie held no open transaction (each ~0.1-0.5 s)


def _owned(log: Path) -> list[int]:
    """The partitions (tasks) a worker was last given, from its log (partition_worker's line)."""
    found = re.findall(r"partitions \[([\d, ]*)\] assigned", log.read_text(errors="replace"))
    return [int(n) for n in found[-1].split(",") if n.strip()] if found else []


def _transactional_ids(scope: str, group: str, log: Path) -> dict[str, str]:
    """The zombie's transactional ids by what they hold: each owned task's, or the worker's one
    (``<group>-worker-<instance>``, its instance from partition_worker's "worker ... consuming" line)."""
    if scope == "partition":
        return {str(task): f"{group}-{task}" for task in _owned(log)}
    instance = re.findall(r": worker (\S+) consuming ", log.read_text(errors="replace"))[-1]
    return {"worker": f"{group}-worker-{instance}"}


def _transactions(admin, ids: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Each transaction's state as its coordinator has it (Ongoing: records written, not ended)
    and the epoch of its producer (a producer started with the same id bumps it: a fencing)."""
    described = admin.describe_transactions(list(ids.values()))
    return {key: (str(described[txn].state.value), described[txn].producer_epoch) for key, txn in ids.items()}


def _exit_or_rejoin(proc: subprocess.Popen, log: Path, since: int, must_exit: bool, must_drop: bool) -> int | None:
    """The woken zombie's exit code; None once it has been given partitions again (unless it had a
    transaction Kafka aborted: then only its exit ends the wait; or one it must abort itself: then
    only its drop, then partitions assigned), or at the bound."""
    deadline = time.monotonic() + EXIT_WAIT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return code
        woken = log.read_bytes()[since:]
        dropped = woken.find(DROPPED) if must_drop else 0
        if not must_exit and dropped >= 0 and b"assigned" in woken[dropped:]:
            time.sleep(2.0)  # a write it tried meanwhile would be fenced by now: give that exit a chance
            return proc.poll()
        time.sleep(0.2)
    return None


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        return next(line.split()[1] for line in status if line.startswith("State:"))


async def _stop(pid: int, seen: dict) -> None:
    os.kill(pid, signal.SIGSTOP)
    for _ in range(100):  # the signal is delivered asynchronously
        seen["state"] = _state(pid)
        if seen["state"] == "T":
            return
        await asyncio.sleep(0.05)


async def _stop_holding_a_transaction(pid: int, admin, scope: str, group: str, log: Path, seen: dict, rnd
                                      ) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """SIGSTOP the zombie, preferably in the middle of a transaction: the case where it holds
    something Kafka or the zombie itself must abort. A stop that caught it between two
    transactions (its commit cycle leaves such gaps at a light load) is undone at once (a pause
    of well under its session) and tried again, up to ``STOP_TRIES`` times; returns the
    transactional ids read at the stop that stays and their transactions' states."""
    tries = 0
    while True:
        tries += 1
        await _stop(pid, seen)
        ids = _transactional_ids(scope, group, log)
        paused = await asyncio.to_thread(_transactions, admin, ids)
        if tries == STOP_TRIES or any(state == ONGOING for state, _ in paused.values()):
            seen["stop tries"] = tries
            return ids, paused
        os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(rnd.uniform(0.05, 0.4))


@pytest.mark.parametrize("scope", ["worker", "partition"])
@pytest.mark.parametrize("service", ["order-match", "tax-guarantee"])
def test_a_paused_worker_woken_after_a_takeover_gets_no_stale_write_accepted(service, scope, private, topic_prefix,
                                                                              rnd):
    zombie, heir = f"{service}-2", service
    paused_s = config.get_int("SANDAN_SESSION_TIMEOUT") + 8  # past the session: the group moves on without it
    seen: dict = {}

    async def inject(p):
        proc = p.services.procs[zombie]
        admin = await asyncio.to_thread(kafka_io.admin)  # connected before the pause: read within its first second
        # Well into the load: the zombie owns partitions and has transactions open most of the time.
        await asyncio.sleep(rnd.uniform(4.0, 7.0))
        p.faults.record(f"SIGSTOP {zombie}")
        p.services.down.add(zombie)  # its exit is this test's to judge, not the harness supervisor's
        try:
            ids, paused = await _stop_holding_a_transaction(proc.proc.pid, admin, scope,
                                                            f"{p.prefix}sandan-{service}", proc.log, seen, rnd)
            seen["tasks"] = {key: state for key, (state, _) in paused.items()}
            seen["owned"] = _owned(proc.log)
            await asyncio.sleep(paused_s)
            # scope partition: the takeover started the tasks' producers elsewhere, each epoch moved
            # past the zombie's; scope worker: the zombie's producer is untouched, its partitions
            # are the other worker's now
            after = await asyncio.to_thread(_transactions, admin, ids)
            seen["epochs"] = {key: (paused[key][1], after[key][1]) for key in paused}
            seen["heir owns"] = _owned(p.services.procs[heir].log)
        finally:
            admin.close()
            p.faults.record(f"SIGCONT {zombie}")
            os.kill(proc.proc.pid, signal.SIGCONT)
        woken_at = proc.log.stat().st_size  # bytes of its log before the SIGCONT
        held = ONGOING in seen["tasks"].values()
        seen["code"] = await asyncio.to_thread(_exit_or_rejoin, proc.proc, proc.log, woken_at,
                                               held and scope == "partition", held and scope == "worker")
        if seen["code"] is None:  # rejoined (or, a failure asserted below, neither within the bound)
            woken = proc.log.read_bytes()[woken_at:]
            after = woken.find(DROPPED) if held and scope == "worker" else 0  # assigned after its drop
            seen["rejoined"] = after >= 0 and b"assigned" in woken[after:]
            proc.stop()
        fenced_log = proc.log.with_name(f"{zombie}.fenced.log")
        proc.log.rename(fenced_log)
        seen["log"] = fenced_log
        p.services.start(zombie)  # the supervisor's restart: it joins the group again

    plan = Plan(count=300, load_s=25.0, workers={**{name: 1 for name in WORKERS}, service: 2},
                **scenario.LONG_OUTAGE)
    pipeline = scenario.pipeline(f"zombie-{service}-{scope}", private, topic_prefix, plan,
                                 SANDAN_TRANSACTION_SCOPE=scope)
    findings = scenario.run(f"zombie: {service.replace('-', '_')} (a transaction per {scope}) paused past its "
                            "session, woken", pipeline, inject)
    log = seen.get("log")
    if log is not None:  # the zombie's own log, scanned for personal data with the others
        run = pipeline_mod.RUNS[-1]
        pipeline_mod.RUNS[-1] = pipeline_mod.Run([*run.logs, log], run.tokens, run.documents)
    assert not findings, findings.text()
    assert seen.get("state") == "T", f"{zombie} was not stopped by SIGSTOP: {seen}"
    text = log.read_text(errors="replace")
    assert seen["owned"] and set(seen["owned"]) <= set(seen["heir owns"]), \
        f"{zombie}'s partitions {seen['owned']} were not taken over while it was stopped: {heir} has {seen['heir owns']}"
    if scope == "partition":
        assert all(after > before for before, after in seen["epochs"].values()), \
            f"{zombie}'s tasks' producers were not fenced while it was stopped (epochs before, after): {seen['epochs']}"
    else:
        assert all(after == before for before, after in seen["epochs"].values()), \
            f"{zombie}'s producer was fenced by its id while it was stopped, not by the group: {seen['epochs']}"
    open_at_pause = sorted(t for t, state in seen["tasks"].items() if state == ONGOING)
    woken = f"exit {seen['code']}" if seen["code"] is not None else "rejoined its group"
    TABLE.notes.append(f"zombie: {service.replace('-', '_')} (scope {scope}) stopped with its transactions "
                       f"{seen['tasks']} (stop {seen['stop tries']} of {STOP_TRIES}); woken: {woken}")
    if open_at_pause and scope == "worker":
        # it aborted the transaction itself (the audit above found none of its writes), dropped
        # the work and took partitions again, all without exiting
        assert seen["code"] is None and seen.get("rejoined"), \
            f"{zombie} exited {seen['code']} instead of dropping its work and rejoining:\n{text[-3000:]}"
        assert DROPPED.decode() in text and CRASH_MARK not in text, text[-3000:]
        return
    if not open_at_pause and seen["code"] is None:
        # nothing open to abort: it heard of the takeover from the group, gave its partitions
        # back and took some again with new producers (the audit above found no stale write)
        assert seen.get("rejoined"), f"{zombie} neither exited nor rejoined its group:\n{text[-3000:]}"
        assert CRASH_MARK not in text, text[-3000:]
        return
    assert seen["code"] == FENCED, f"{zombie} exited {seen['code']}, not {FENCED} (fenced):\n{text[-3000:]}"
    critical = [line for line in text.splitlines() if CRASH_MARK in line]
    assert critical and all(any(mark in line for mark in FENCING) for line in critical), critical
