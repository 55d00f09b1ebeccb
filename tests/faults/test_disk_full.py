"""Disks that fill up under load (issue 20), on small filesystems the test mounts
(``small_disk.py``: a tmpfs over the data folder, a filler file written until nothing is
left, deleted again later): the workers' state folder, the Kafka broker's log directory and
Redis's append-only file.

The workers' state folder full (``SANDAN_LOCAL_DIR/state``: order_match's and returns' RocksDB
tables): a worker that cannot keep its table must stop before committing anything that depends
on it (exit 70, started again by the supervisor, as often as it takes; also when it cannot even
open its stores) or wait, and once there is space again go on with nothing lost, duplicated or
off its ledger. The workers' exits 70 are the expected outcome, so they are the only crashes
allowed (the table counts the others and notes these).

The Kafka log directory full: a broker whose only log directory fails stops (Kafka takes a
failed directory offline until the broker starts again), so once there is space the broker is
started again, as an operator would; the gateway answers UNAVAILABLE meanwhile and the workers
wait. Nothing acknowledged may be lost.

Redis's append-only file full: Redis refuses every write it cannot append (``MISCONF``) and
takes them again by itself once it can; the workers wait (``streaming.transient``), the gateway
answers UNAVAILABLE. Nothing may be lost, and no balance or quota may differ from its ledger.
"""
from __future__ import annotations

import asyncio

from tests.faults import scenario, small_disk
from tests.faults.pipeline import WORKERS, Plan
from tests.faults.table import TABLE

FULL_S = 12
STATE_MB = 64


def _split(findings, names) -> list[str]:
    """The crashes ``names`` were allowed (their exits 70 and their log lines), taken out of ``findings``."""
    allowed = [c for c in findings.crashes for name in names
               if c == f"{name} exited with 70 without being stopped" or c.startswith(f"{name}.log: ")]
    findings.crashes = [c for c in findings.crashes if c not in allowed]
    return allowed


def filling(rnd, folder, what: str, filled: dict, back: str = "space back", then=None):
    """The fault: ``folder``'s small filesystem filled 3–6 s into the load, freed FULL_S later
    (also when the run is cut short), then ``then`` (an operator's step once there is space)."""
    async def inject(p):
        await asyncio.sleep(rnd.uniform(3.0, 6.0))
        p.faults.record(what)
        filled["bytes"] = await asyncio.to_thread(small_disk.fill, folder)
        try:
            await asyncio.sleep(FULL_S)
        finally:
            small_disk.free(folder)
            p.faults.record(back)
        if then is not None:
            await asyncio.to_thread(then)
    return inject


def judged(findings, filled: dict, restarts_note: str | None = None) -> None:
    """The scenario's verdict; with ``restarts_note`` the workers' exits 70 are expected (counted
    in a note under the table, every other exit stays a crash)."""
    if restarts_note is not None:
        allowed = _split(findings, WORKERS)
        TABLE.rows[-1].crashes = len(findings.crashes)
        TABLE.notes.append(restarts_note.format(sum("exited with 70" in c for c in allowed)))
    assert filled["bytes"] > 0, "the filesystem was full before the filler"
    assert not findings, findings.text()


def test_the_workers_state_folder_full_under_load_loses_nothing(private, topic_prefix, rnd):
    plan = Plan(load_s=20.0, **scenario.LONG_OUTAGE)
    pipeline = scenario.pipeline("disk-state", private, topic_prefix, plan)
    state = pipeline.run_dir / "state"
    filled = {}
    inject = filling(rnd, state, f"the workers' state folder full ({STATE_MB} MB tmpfs)", filled)
    with small_disk.mounted(state, STATE_MB):
        findings = scenario.run(f"disk full: the workers' RocksDB folder, {FULL_S} s", pipeline, inject)
    judged(findings, filled, "disk full: workers exited 70 and were started again {} times while their disk was"
                             " full (expected)")


KAFKA_HEADROOM_MB = 96
REDIS_HEADROOM_MB = 16


def test_the_kafka_log_directory_full_under_load_loses_nothing(private, topic_prefix, rnd):
    plan = Plan(load_s=20.0, **scenario.LONG_OUTAGE)
    pipeline = scenario.pipeline("disk-kafka", private, topic_prefix, plan)
    data = private.local_dir / "kafka" / "data"
    filled = {}
    inject = filling(rnd, data, "the Kafka log directory full", filled, "space back, the broker started again",
                     then=lambda: private.restart("kafka", 0.5))
    with small_disk.data_moved_onto(private, "kafka", data, KAFKA_HEADROOM_MB):
        findings = scenario.run(f"disk full: the Kafka log directory, {FULL_S} s", pipeline, inject)
    # a worker meeting the broker's stop may exit 70 and be started again
    judged(findings, filled, "disk full (Kafka): workers exited 70 and were started again {} times while the broker"
                             " was away (expected)")


def test_the_redis_append_only_file_full_under_load_loses_nothing(private, topic_prefix, rnd):
    plan = Plan(load_s=20.0, **scenario.LONG_OUTAGE)
    pipeline = scenario.pipeline("disk-redis", private, topic_prefix, plan)
    aof = private.local_dir / "redis" / "appendonlydir"
    filled = {}
    inject = filling(rnd, aof, "Redis's append-only file full", filled)
    with small_disk.data_moved_onto(private, "redis", aof, REDIS_HEADROOM_MB):
        findings = scenario.run(f"disk full: Redis's append-only file, {FULL_S} s", pipeline, inject)
    judged(findings, filled)
