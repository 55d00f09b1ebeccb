"""A task's records held per topic partition and handed over as batches (task_batches)."""
from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from services.common.task_batches import TaskBatches

PARTITIONS = 6


class Builder:
    """aiokafka's BatchBuilder as TaskBatches uses it: full after ``room`` records."""

    def __init__(self, room: int) -> None:
        self.room, self.records = room, []

    def append(self, *, key, value, timestamp):
        if self.records and len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.sent: list[tuple[str, int, list]] = []
        self.lookups = 0

    def create_batch(self) -> Builder:
        return Builder(self.room)

    async def partitions_for(self, topic: str) -> set[int]:
        self.lookups += 1
        return set(range(PARTITIONS))

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> asyncio.Future:
        self.sent.append((topic, partition, batch.records))
        future = asyncio.get_running_loop().create_future()
        base = sum(len(r) for t, p, r in self.sent[:-1] if (t, p) == (topic, partition))
        future.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), base, -1, 0, 0))
        return future


def run(coro):
    return asyncio.run(coro)


def test_records_go_to_the_partition_the_producer_would_choose_and_out_one_batch_per_partition():
    async def go():
        producer = Producer()
        batches = TaskBatches(producer)
        keys = [b"order-%d" % i for i in range(40)]
        for k in keys:
            assert await batches.add("out", k, b"v-" + k, None) == []
        await batches.add("changelog", b"row", b"x", 3)  # a given partition is kept
        assert len(batches) == 41 and producer.sent == []  # nothing handed over before the ship
        shipped = await batches.ship()
        return producer, batches, keys, shipped

    producer, batches, keys, shipped = run(go())
    expected: dict[int, list] = {}
    for k in keys:
        expected.setdefault(DefaultPartitioner()(k, list(range(PARTITIONS)), None), []).append((k, b"v-" + k))
    got = {p: records for topic, p, records in producer.sent if topic == "out"}
    assert got == expected  # murmur2 of the key, order kept within a partition
    assert ("changelog", 3, [(b"row", b"x")]) in producer.sent
    assert len(producer.sent) == len(expected) + 1 == len(shipped)
    assert sum(s.count for s in shipped) == 41 and len(batches) == 0
    assert producer.lookups == 1  # the topic's partitions looked up once per transaction


def test_a_full_batch_is_handed_over_at_once_and_offsets_of_its_last_record_follow():
    async def go():
        producer = Producer(room=3)
        batches = TaskBatches(producer)
        early = []
        for i in range(7):
            early += await batches.add("changelog", b"k%d" % i, b"v", 2)
        late = await batches.ship()
        return producer, early, late

    producer, early, late = run(go())
    assert [s.count for s in early] == [3, 3] and [s.count for s in late] == [1]
    assert [len(r) for _, _, r in producer.sent] == [3, 3, 1]
    assert [s.last_offset() for s in early + late] == [2, 5, 6]
    assert not any(s.failed() for s in early + late)


def test_dropped_records_are_never_handed_over():
    async def go():
        producer = Producer()
        batches = TaskBatches(producer)
        await batches.add("out", b"a", b"1", None)
        await batches.add("out", b"b", b"2", 1)
        dropped = batches.drop()
        return producer, dropped, await batches.ship(), len(batches)

    producer, dropped, shipped, held = run(go())
    assert (dropped, shipped, held, producer.sent) == (2, [], 0, [])


def test_an_undelivered_batch_counts_as_failed():
    async def go():
        producer = Producer()
        batches = TaskBatches(producer)
        await batches.add("out", b"a", b"1", 0)
        (shipped,) = await batches.ship()
        pending = asyncio.get_running_loop().create_future()
        refused = asyncio.get_running_loop().create_future()
        refused.set_exception(RuntimeError("refused"))
        return shipped, type(shipped)(shipped.tp, pending, 1), type(shipped)(shipped.tp, refused, 1)

    delivered, pending, refused = run(go())
    assert (delivered.failed(), pending.failed(), refused.failed()) == (False, True, True)
