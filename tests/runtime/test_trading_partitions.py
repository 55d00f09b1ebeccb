"""Two worker processes of one group trading four partitions 20 times under a steady load, on
the real broker: ten times one of them leaves (SIGKILL or SIGTERM, then removed from the group
as its static member, which an operator or the session timeout does) and the other takes every
partition; ten times it comes back and they share again. Each worker counts, per key, the
records it handles in a changelog table and writes one output per record
(tests/runtime/trading_worker.py).

The runtime's promise under exactly_once (the default, docs/GUARANTEES.md): a worker's
outputs, table changes and offsets are one transaction, and the next owner of a partition
fences the last one before reading it. So, as a read_committed reader sees it: every input
record produced exactly one output (zero duplicates, zero missing), and every key's table row
counts its records exactly once, in order (no gap, no repeat), whatever the kills cut short."""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import MemberToRemove, NewTopic

from services.common import changelogs, config, kafka_io, streaming
from tests.runtime import trading_worker
from tests.runtime.group_audit import committed, end_offsets, read_committed, until

pytestmark = pytest.mark.integration
PARTITIONS = 4
KEYS = 40
TRADES = 20           # membership changes: 10 leaves, 10 returns
RECORD_EVERY_S = 0.01  # the steady load: about 100 records a second
STEP_S = 30           # longest wait for one trade to settle (only bounds a failure)


class Member:
    """One worker identity (static instance id, state folder), run as successive processes."""

    def __init__(self, name: str, topics: tuple[str, str, str], folder: Path, group: str) -> None:
        self.name, self.topics, self.folder, self.group = name, topics, folder, group
        self.instance = f"{group}-{name}"
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.exits: list[int] = []

    def status_file(self) -> Path:
        return self.folder / f"status-{self.runs}.json"

    def start(self) -> None:
        self.runs += 1
        env = {**os.environ, "SANDAN_WORKER_ID": self.instance, "SANDAN_SESSION_TIMEOUT": "6",
               "SANDAN_COMMIT_INTERVAL_MS": "200", "PYTHONPATH": str(config.PROJECT_ROOT)}
        log = open(self.folder / f"worker-{self.runs}.log", "wb")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.trading_worker", *self.topics, str(self.folder / "state"),
             str(self.status_file())], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=config.PROJECT_ROOT)
        log.close()

    def partitions(self) -> set[int]:
        """What the running process owns and has restored (empty when it is not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return set()
        try:
            return set(json.loads(self.status_file().read_text())["partitions"])
        except (OSError, ValueError):
            return set()

    def status(self) -> dict:
        return json.loads(self.status_file().read_text())

    def leave(self, how: signal.Signals) -> None:
        """Stopped (SIGTERM: flushes, aborts its transactions, exits 0) or killed (SIGKILL); then
        removed from the group as a static member, so the other takes over without waiting out
        the session timeout."""
        self.proc.send_signal(how)
        self.exits.append(self.proc.wait(timeout=STEP_S))
        admin = kafka_io.admin()
        try:
            admin.remove_group_members(self.group, [MemberToRemove(group_instance_id=self.instance)])
        finally:
            admin.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_two_workers_trading_partitions_20_times_under_load(stack, topic_prefix, tmp_path):
    base = f"{topic_prefix}runtime-trading"
    inputs, output, changelog = f"{base}-in", f"{base}-out", f"{base}-changelog"
    changelogs.declare_topics({changelog: PARTITIONS})
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, num_partitions=PARTITIONS, replication_factor=1),
                         NewTopic(output, num_partitions=1, replication_factor=1)])
    admin.close()
    group = streaming.app_id(trading_worker.SERVICE)
    rnd = random.Random(17)
    members = []
    for name in ("w1", "w2"):
        (tmp_path / name).mkdir()
        members.append(Member(name, (inputs, output, changelog), tmp_path / name, group))
    sent: list = []
    trades: list[str] = []
    started = time.monotonic()

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", linger_ms=5)
        await producer.start()
        producing = asyncio.Event()
        producing.set()

        async def produce() -> None:
            n = 0
            while producing.is_set():
                key = b"k%02d" % (n % KEYS)
                sent.append(await producer.send(inputs, key=key, value=b"%s:%d" % (key, n // KEYS)))
                n += 1
                await asyncio.sleep(RECORD_EVERY_S)
            await producer.flush()

        def shared() -> bool:
            a, b = (m.partitions() for m in members)
            return bool(a) and bool(b) and not a & b and a | b == set(range(PARTITIONS))

        load = asyncio.ensure_future(produce())
        try:
            for m in members:
                m.start()
            await until(shared, "the two workers shared the partitions", 60)
            for i in range(TRADES // 2):
                leaving, staying = members[i % 2], members[1 - i % 2]
                await asyncio.sleep(rnd.uniform(0.2, 1.5))  # mid-stream, some commits in
                how = rnd.choice([signal.SIGKILL, signal.SIGTERM])
                await asyncio.to_thread(leaving.leave, how)
                trades.append(f"{leaving.name} {how.name}")
                await until(lambda: staying.partitions() == set(range(PARTITIONS)),
                            f"trade {len(trades)}: {staying.name} took every partition", STEP_S)
                await asyncio.sleep(rnd.uniform(0.2, 1.5))
                leaving.start()
                trades.append(f"{leaving.name} back")
                await until(shared, f"trade {len(trades)}: {leaving.name} took its share", STEP_S)
            producing.clear()
            await load
            ends = await asyncio.to_thread(end_offsets, inputs)
            await until(lambda: committed(group) == ends, "every input record committed", 60)
        finally:
            producing.clear()
            await asyncio.gather(load, return_exceptions=True)
            await producer.stop()
            for m in members:
                m.stop()

    try:
        asyncio.run(main())
    finally:
        print(f"trading: {len(trades)} trades ({', '.join(trades)}), {len(sent)} records, "
              f"{time.monotonic() - started:.1f} s")
    assert len(trades) == TRADES
    assert all(m.status()["guarantee"] == "exactly_once" for m in members)
    assert {signal.SIGKILL.name, signal.SIGTERM.name} <= {t.split()[1] for t in trades if "back" not in t}
    for m in members:  # SIGTERM exits 0, SIGKILL -9: nothing else ended a worker
        assert set(m.exits) <= {0, -signal.SIGKILL}, (m.name, m.exits)

    values = [r.value for r in read_committed(inputs)]
    produced = Counter(values)
    assert len(values) == len(sent) and max(produced.values()) == 1
    outputs = Counter(r.key for r in read_committed(output))
    missing = produced.keys() - outputs.keys()
    duplicated = {k: n for k, n in outputs.items() if n > 1}
    assert not missing and not duplicated and outputs.keys() == produced.keys(), \
        f"{len(missing)} inputs without an output, {len(duplicated)} with several: {sorted(duplicated)[:10]}"

    rows: dict[bytes, bytes] = {}
    for r in read_committed(changelog):  # the last row of each key is its value
        rows[r.key] = r.value
    model = Counter(v.rsplit(b":", 1)[0] for v in values)
    assert {k: rows.get(k) for k in model} == {k: b"%d:%d:0" % (n, n - 1) for k, n in model.items()}
