"""A worker that has read a transactional input to its end commits the end: the offsets past its
last record that the commit markers take count as read, so Kafka's own lag (end offset minus the
group's committed offset) is 0, as an operator's kafka-consumer-groups or lag alert sees it."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from services.common import kafka_io
from services.common.partition_worker import PartitionWorker
from tests.runtime.group_audit import committed, end_offsets, until

pytestmark = pytest.mark.integration


def test_a_caught_up_worker_commits_past_the_commit_markers_of_its_transactional_input(stack, topic_prefix):
    inputs = f"{topic_prefix}caught-up-in"
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, 2, 1)])
    admin.close()
    worker = PartitionWorker("runtime-caught-up", [inputs])
    handled: list = []

    async def handle(records) -> None:
        handled.extend(records)

    async def main() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), transactional_id=f"{topic_prefix}upstream")
        await producer.start()
        for n in range(5):  # five transactions: each leaves a marker after its records
            async with producer.transaction():
                for p in (0, 1):
                    await producer.send(inputs, key=b"k%d" % n, value=b"v%d" % n, partition=p)
        await producer.stop()
        run = asyncio.ensure_future(worker.run(handle))
        try:
            await until(lambda: len(handled) == 10, "the worker handled every record")
            ends = end_offsets(inputs)
            assert ends == {0: 10, 1: 10}, "five records and five markers in each partition"
            await until(lambda: committed(worker.group) == ends, "the group committed the end of each partition")
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    asyncio.run(main())
