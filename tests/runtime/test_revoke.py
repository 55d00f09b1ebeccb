"""Two partition workers of one group on the real broker: when the second joins, the first
closes and (grace 0) deletes the store of the partition it lost, and the second rebuilds it
from the changelog before handling its records."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from services.common import changelogs, kafka_io
from services.common.changelog_table import ChangelogTable, store_folder
from services.common.partition_worker import PartitionWorker

pytestmark = pytest.mark.integration
WAIT_S = 120  # only bounds a failure


class Exited(Exception):
    pass


async def _until(check, what: str) -> None:
    async def poll():
        while not check():
            await asyncio.sleep(0.1)
    try:
        await asyncio.wait_for(poll(), WAIT_S)
    except asyncio.TimeoutError:
        raise AssertionError(f"never: {what}") from None


def test_a_worker_closes_and_deletes_the_store_of_a_partition_taken_away(stack, topic_prefix, tmp_path):
    changelog = f"{topic_prefix}runtime-revoke-changelog"
    inputs = f"{topic_prefix}runtime-revoke-in"
    changelogs.declare_topics({changelog: 2})
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, num_partitions=2, replication_factor=1)])
    admin.close()

    def exit_process(code: int) -> None:
        raise Exited(code)

    def worker(name: str) -> tuple[PartitionWorker, ChangelogTable, list]:
        table = ChangelogTable(changelog, tmp_path / name, revoked_grace_s=0)
        w = PartitionWorker("runtime-revoke", [inputs], tables=[table])
        w.instance = f"{w.group}-{name}"  # two static members in one process
        w.guard = type(w.guard)(exit_process)
        handled: list = []

        async def handle(records) -> None:
            for r in records:
                table.put(r.partition, r.value, b"seen by " + name.encode())
                handled.append((r.partition, r.offset))
        w.handle = handle
        return w, table, handled

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
        await producer.start()
        for p in (0, 1):
            await producer.send_and_wait(inputs, key=b"k", value=b"key-%d" % p, partition=p)
        a, a_table, a_handled = worker("a")
        b, b_table, b_handled = worker("b")
        runs = [asyncio.ensure_future(a.run(a.handle))]
        try:
            await _until(lambda: len(a_handled) == 2 and a_table._sent == {} and len(a_table._stores) == 2,
                         "worker a handled and saved both partitions")
            runs.append(asyncio.ensure_future(b.run(b.handle)))
            await _until(lambda: len(a.partitions) == 1 and len(b.partitions) == 1, "the partitions were shared")
            lost = next(iter(b.partitions))
            assert set(a_table._stores) == set(a.partitions) == {1 - lost}
            assert not store_folder(tmp_path / "a", lost).exists(), "grace 0: deleted at the revoke"
            assert store_folder(tmp_path / "a", 1 - lost).exists()
            assert b_table.get(b"key-%d" % lost) == b"seen by a", "rebuilt from the changelog"
            assert b_handled == [], "its record was committed by a before the revoke"
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            for w in (a, b):
                if w.consumer is not None:
                    await w.consumer.stop()
                    await w.producer.stop()
            a_table.close()
            b_table.close()
            await producer.stop()
        for run in runs:
            if run.done() and not run.cancelled() and run.exception() is not None:
                raise run.exception()

    asyncio.run(main())
