"""A table rebuilt from its changelog on the real Kafka: what another worker, or this one after
a restart, finds for the partitions it takes over."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from services.common import changelogs, kafka_io
from services.common.changelog_table import ChangelogTable

pytestmark = pytest.mark.integration


async def _send_changes(table: ChangelogTable) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
    await producer.start()
    try:
        for partition, key, value in table.changes():
            meta = await (await producer.send(table.topic, value=value, key=key, partition=partition))
            table.sent(partition, meta.offset)
    finally:
        await producer.stop()


def test_a_new_worker_rebuilds_only_the_partitions_it_takes_and_a_restarted_one_reads_only_the_rest(
        stack, topic_prefix, tmp_path):
    topic = f"{topic_prefix}recovery-changelog"
    changelogs.declare_topics({topic: 4})
    first = ChangelogTable(topic, tmp_path / "first")
    first.put(0, b"a", b"a1")
    first.put(1, b"b", b"b1")
    first.put(0, b"c", b"c1")
    first.put(0, b"a", b"a2")
    first.delete(0, b"c")
    asyncio.run(_send_changes(first))
    first.save_offsets()

    other = ChangelogTable(topic, None)
    assert asyncio.run(other.recover(kafka_io.bootstrap(), {0})) == 4
    assert dict(other.items()) == {b"a": b"a2"}  # the last value of each key; the tombstone deleted c

    first.put(1, b"b", b"b2")  # written after the last commit on this host, then restarted
    asyncio.run(_send_changes(first))
    first.close()
    restarted = ChangelogTable(topic, tmp_path / "first")
    assert asyncio.run(restarted.recover(kafka_io.bootstrap(), {0, 1})) == 1, "read again what it held"
    assert dict(restarted.items()) == {b"a": b"a2", b"b": b"b2"}
    restarted.close()
