"""A partition taken away while its worker is in the middle of a slow handler call (the
handler awaits), on the real broker, under both processing guarantees: the batch in hand
finishes, its outputs and offsets are committed by the revoke before it returns (commits are
10 s apart and the batch is held just after one, so no other commit can do it), and the new
owner starts exactly after it. A rebalance a worker goes through hands nothing over twice
(docs/GUARANTEES.md), so every input record is handled once, by one worker, with one output
and one table change, as a read_committed reader sees them."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from services.common import changelogs, kafka_io
from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker
from tests.runtime.group_audit import committed, read_committed, until

pytestmark = pytest.mark.integration
COMMIT_INTERVAL_MS = 10_000
HOLD_WITHIN_S = 1.0  # a batch is held only this soon after the last commit (or the start)


class Exited(Exception):
    pass


class Worker(PartitionWorker):
    """A worker that notes when the group takes partitions away and what holds when it returns."""

    def __init__(self, name: str, service: str, inputs, output: str, table: ChangelogTable, events: list) -> None:
        super().__init__(service, inputs, tables=[table])
        self.instance = f"{self.group}-{name}"  # two static members in one process
        self.label, self.output, self.table, self.events = name, output, table, events
        self.handled: list[tuple[int, int]] = []
        self.deliveries: list[asyncio.Future] = []
        self.revoke_called = asyncio.Event()
        self.revoke_returned = asyncio.Event()
        self.committed_at_revoke: dict[int, int] = {}
        self.undelivered_at_revoke = -1

        def exit_process(code: int) -> None:
            raise Exited(code)

        self.guard = type(self.guard)(exit_process)  # a failure ends the test, not pytest

    async def revoked(self, revoked) -> None:
        if not revoked or self.revoke_returned.is_set():  # only the first taking-away is watched
            return await super().revoked(revoked)
        self.events.append((self.label, "revoke called"))
        self.revoke_called.set()
        await super().revoked(revoked)
        # what the group and Kafka hold at the moment the callback hands the partitions over
        self.committed_at_revoke = await asyncio.to_thread(committed, self.group)
        self.undelivered_at_revoke = sum(1 for d in self.deliveries
                                         if not d.done() or d.cancelled() or d.exception() is not None)
        self.events.append((self.label, "revoke returned"))
        self.revoke_returned.set()

    async def handle_records(self, records, slow=None) -> None:
        """One output and one table row per record; ``slow`` awaited halfway through the batch."""
        half = len(records) // 2
        for i, r in enumerate(records):
            if i == half and slow is not None:
                await slow()
            self.table.put(r.partition, r.value, self.label.encode())
            self.deliveries.append(await self.send(self.output, r.value, self.label.encode()))
            self.handled.append((r.partition, r.offset))


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_a_partition_revoked_mid_batch_is_committed_then_taken_over_exactly_after(stack, topic_prefix, tmp_path,
                                                                                  monkeypatch, guarantee):
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", guarantee)
    # commits far apart, and the batch held just after one: only the revoke can commit the batch in hand
    monkeypatch.setenv("SANDAN_COMMIT_INTERVAL_MS", str(COMMIT_INTERVAL_MS))
    base = f"{topic_prefix}runtime-midbatch-{guarantee.replace('_', '-')}"
    inputs, output, changelog = f"{base}-in", f"{base}-out", f"{base}-changelog"
    changelogs.declare_topics({changelog: 2})
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, num_partitions=2, replication_factor=1),
                         NewTopic(output, num_partitions=1, replication_factor=1)])
    admin.close()
    events: list = []
    produced: set[tuple[int, int]] = set()
    in_hand: list = []  # the batch a's handler holds when the group takes partitions away

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", linger_ms=5)
        await producer.start()
        sent: list[asyncio.Future] = []
        producing = asyncio.Event()

        async def produce() -> None:
            """A record on each partition every 20 ms while ``producing`` is set."""
            n = 0
            while producing.is_set():
                for p in (0, 1):
                    sent.append(await producer.send(inputs, key=b"k", value=b"r-%d-%d" % (p, n), partition=p))
                n += 1
                await asyncio.sleep(0.02)
            await producer.flush()
            produced.update((m.partition, m.offset) for m in [d.result() for d in sent])

        service = f"runtime-midbatch-{guarantee}"
        a = Worker("a", service, [inputs], output, ChangelogTable(changelog, tmp_path / "a"), events)
        b = Worker("b", service, [inputs], output, ChangelogTable(changelog, tmp_path / "b"), events)
        assert a.exactly_once == (guarantee == "exactly_once")
        blocked, release = asyncio.Event(), asyncio.Event()
        last_commit = [time.monotonic()]

        def committing() -> None:
            events.append(("a", "commit"))
            last_commit[0] = time.monotonic()

        a.before_commit.append(committing)

        async def slow() -> None:
            events.append(("a", "handler waiting"))
            blocked.set()
            await release.wait()

        async def handle_a(records) -> None:
            # partition 1 is the one that moves: the range assignor gives partition 0 to the member
            # whose id sorts first, and a static member's id starts with its instance id (a < b)
            hold = (not in_hand and any(r.partition == 1 for r in records)
                    and time.monotonic() - last_commit[0] < HOLD_WITHIN_S)
            if hold:
                in_hand.extend((r.partition, r.offset) for r in records)
            await a.handle_records(records, slow if hold else None)
            if hold:
                events.append(("a", "batch in hand finished"))

        producing.set()
        last_commit[0] = time.monotonic()
        production = asyncio.ensure_future(produce())
        runs = [asyncio.ensure_future(a.run(handle_a))]
        try:
            await until(lambda: blocked.is_set(), "worker a held a batch of partition 1")
            runs.append(asyncio.ensure_future(b.run(b.handle_records)))
            await asyncio.wait_for(a.revoke_called.wait(), 60)
            assert not a.revoke_returned.is_set(), "the revoke returned while the batch was in hand"
            assert b.handled == [] and b.partitions == frozenset()
            release.set()
            await asyncio.wait_for(a.revoke_returned.wait(), 60)
            await until(lambda: len(a.partitions) == 1 and len(b.partitions) == 1, "the partitions were shared")
            await until(lambda: len(b.handled) > 0, "worker b handled records of its partition")
            producing.clear()
            await production
            await until(lambda: len(a.handled) + len(b.handled) >= len(produced), "every record was handled")
            await until(lambda: sum(committed(a.group).values()) == len(produced), "every offset was committed")
        finally:
            release.set()
            producing.clear()
            await asyncio.gather(production, return_exceptions=True)
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            for w in (a, b):
                if w.consumer is not None:
                    await w.consumer.stop()
                    await w.producer.stop()
                w.table.close()
            await producer.stop()
        for run in runs:
            if run.done() and not run.cancelled() and run.exception() is not None:
                raise run.exception()
        return a, b

    a, b = asyncio.run(main())
    lost = next(iter(b.partitions))
    assert lost == 1, "the partition held mid-batch stayed with worker a"
    order = [e[1] for e in events if e[0] == "a"]
    held = order.index("handler waiting")
    called, finished, returned = (order.index(e, held) for e in ("revoke called", "batch in hand finished",
                                                                   "revoke returned"))
    assert held < called < finished < returned, order
    assert "commit" not in order[held:finished] and "commit" in order[finished:returned], \
        f"the batch in hand was not committed by the revoke: {order[held:returned + 1]}"

    # the batch in hand held records of the partition that moved, and worker a finished it
    moved_in_hand = sorted(o for p, o in in_hand if p == lost)
    assert moved_in_hand and set(in_hand) <= set(a.handled)
    # before the revoke returned: every output of a delivered, its offsets committed
    assert a.undelivered_at_revoke == 0
    last_by_a = max(o for p, o in a.handled if p == lost)
    assert last_by_a == moved_in_hand[-1], "worker a handled records of the moved partition after the revoke"
    assert a.committed_at_revoke.get(lost) == last_by_a + 1
    # the new owner started exactly there: nothing handled twice, nothing skipped
    assert min(o for p, o in b.handled if p == lost) == last_by_a + 1
    assert not set(a.handled) & set(b.handled), "a record was handled by both workers"
    assert sorted(a.handled + b.handled) == sorted(produced)
    assert {p for p, _ in b.handled} == {lost}

    # every effect once: one output and one changelog record per input record
    values = [r.value for r in read_committed(inputs)]
    outputs = Counter(r.key for r in read_committed(output))
    assert outputs == Counter(values), "an input without exactly one output"
    rows = Counter(r.key for r in read_committed(changelog))
    assert rows == Counter(values), "an input without exactly one table change"
