"""A partition worker on the real broker restoring 100,000 keys of one partition while its
other partition keeps flowing: the ready partition is not held up by the restore, the
restoring one is handled only once its store is whole, and every input record exactly once."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from services.common import changelogs, kafka_io
from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker
from tests.runtime.group_audit import run_until

pytestmark = pytest.mark.integration

KEYS = 100_000
INPUTS_PER_PARTITION = 5
GATE_S = 120  # only bounds a failure: with a blocking restore, partition 1 would never be handled


class Exited(Exception):
    pass


class GatedConsumer:
    """The restore's consumer, holding its second chunk back until partition 1 is handled: the
    restore is then provably unfinished while the worker handles the other partition."""

    def __init__(self, consumer, gate: asyncio.Event) -> None:
        self.consumer, self.gate, self.chunks = consumer, gate, 0

    def __getattr__(self, name):
        return getattr(self.consumer, name)

    async def getmany(self, *tps, **kwargs):
        if self.chunks == 1:
            await asyncio.wait_for(self.gate.wait(), GATE_S)
        batch = await self.consumer.getmany(*tps, **kwargs)
        if any(batch.values()):
            self.chunks += 1
        return batch


class ObservedTable(ChangelogTable):
    def __init__(self, *args, events: list, gate: asyncio.Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events, self.gate = events, gate

    def _restore_consumer(self, bootstrap: str):
        return GatedConsumer(ChangelogTable._restore_consumer(bootstrap), self.gate)

    def _ready(self, partition, ready) -> None:
        self.events.append(("ready", partition))
        super()._ready(partition, ready)


async def _produce(topic: str, partition: int, records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        sent = [await producer.send(topic, key=k, value=v, partition=partition) for k, v in records]
        await producer.flush()
        assert all(d.done() and d.exception() is None for d in sent)
    finally:
        await producer.stop()


def test_a_restore_of_100000_keys_does_not_hold_up_the_other_partition(stack, topic_prefix, tmp_path):
    changelog = f"{topic_prefix}runtime-restore-changelog"
    inputs = f"{topic_prefix}runtime-restore-in"
    changelogs.declare_topics({changelog: 2})
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, num_partitions=2, replication_factor=1)])
    admin.close()
    asyncio.run(_produce(changelog, 0, ((b"k%06d" % i, b"v" * 100) for i in range(KEYS))))
    for p in (0, 1):
        asyncio.run(_produce(inputs, p, ((b"in", b"%d-%d" % (p, n)) for n in range(INPUTS_PER_PARTITION))))

    events: list = []
    handled: list = []

    async def main():
        gate = asyncio.Event()
        all_handled = asyncio.Event()
        table = ObservedTable(changelog, tmp_path / "w", events=events, gate=gate)
        worker = PartitionWorker("runtime-restore", [inputs], tables=[table])

        def exit_process(code: int) -> None:
            raise Exited(code)

        worker.guard = type(worker.guard)(exit_process)  # a failure ends the test, not pytest

        async def handle(records) -> None:
            for r in records:
                events.append(("handled", r.partition, r.offset, 0 in table.restoring))
                handled.append((r.partition, r.offset))
                if r.partition == 0:  # what the restored store holds when its first record comes
                    events.append(("rows", sum(1 for k, _ in table.items() if k.startswith(b"k"))))
            if sum(1 for p, _ in handled if p == 1) == INPUTS_PER_PARTITION:
                gate.set()
            if len(handled) >= 2 * INPUTS_PER_PARTITION:
                all_handled.set()

        try:
            await run_until(worker, handle, all_handled, lambda: f"not every input was handled: {handled}", GATE_S)
        finally:
            table.close()

    asyncio.run(main())
    ready_0 = events.index(("ready", 0))
    ones = [i for i, e in enumerate(events) if e[0] == "handled" and e[1] == 1]
    zeros = [i for i, e in enumerate(events) if e[0] == "handled" and e[1] == 0]
    assert len(ones) == len(zeros) == INPUTS_PER_PARTITION
    assert max(ones) < ready_0, "partition 1 waited for partition 0's restore"
    assert all(events[i][3] for i in ones), "partition 0 was still restoring while partition 1 was handled"
    assert min(zeros) > ready_0, "a record of partition 0 was handled before its store was restored"
    assert ("rows", KEYS) in events and all(e[1] == KEYS for e in events if e[0] == "rows")
    assert sorted(handled) == sorted({(p, n) for p in (0, 1) for n in range(INPUTS_PER_PARTITION)})
