"""What the runtime tests read back from the broker to audit a run: a topic as a
read_committed reader sees it, a group's committed offsets, and bounded waits."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from services.common import kafka_io

WAIT_S = 120  # only bounds a failure


async def until(check: Callable[[], bool], what: str, wait_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + wait_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.1)


async def run_until(worker, handle, done: asyncio.Event, what: Callable[[], str], wait_s: float = WAIT_S) -> None:
    """Run ``worker`` with ``handle`` until ``done`` is set (a worker that stops first raises its
    error here; ``what`` says what was missing otherwise), then stop its Kafka clients."""
    run = asyncio.ensure_future(worker.run(handle))
    waiting = asyncio.ensure_future(done.wait())
    try:
        finished, _ = await asyncio.wait({run, waiting}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        if run in finished:
            run.result()
        assert done.is_set(), what()
    finally:
        for task in (run, waiting):
            task.cancel()
        await asyncio.gather(run, waiting, return_exceptions=True)
        if worker.consumer is not None:
            await worker.consumer.stop()
            await worker.producer.stop()
        await worker._close_tasks(set(worker._tasks))


def read_committed(topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` a read_committed reader gets (records of aborted transactions
    left out, when producers use them), up to the ends seen at the start."""
    consumer = KafkaConsumer(bootstrap_servers=kafka_io.bootstrap(), group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(p) < end[p] for p in parts):
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout_s} s"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def committed(group: str) -> dict[int, int]:
    """Input partition -> the offset ``group`` committed for it (the next record to handle)."""
    admin = kafka_io.admin()
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def end_offsets(topic: str) -> dict[int, int]:
    return kafka_io.end_offsets(topic)
