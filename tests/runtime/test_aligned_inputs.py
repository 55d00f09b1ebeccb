"""Co-partitioned inputs read in step on the real broker (``input_alignment``): two topics with a
backlog of records 1 ms apart, one topic's records twenty times the other's size, so fetches bring
many more of the small ones. Aligned, neither topic's handled records run more than the allowed
skew (plus what one batch can bring) ahead of the other's while both have more to read; every
record is handled exactly once. Not aligned (the setting at 0), the small topic runs far ahead."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from services.common import kafka_io
from services.common.partition_worker import PartitionWorker
from tests.runtime.group_audit import run_until

pytestmark = pytest.mark.integration

RECORDS = 20_000
SPACING_MS = 1
SKEW_MS = 1000
BATCH = 500
WAIT_S = 120  # only bounds a failure


class Exited(Exception):
    pass


async def _produce(topics: dict[str, int], base_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        sent = []
        for i in range(RECORDS):
            for topic, size in topics.items():
                sent.append(await producer.send(topic, key=b"k", value=b"%08d" % i + b"x" * size, partition=0,
                                                timestamp_ms=base_ms + i * SPACING_MS))
        await producer.flush()
        assert all(d.done() and d.exception() is None for d in sent)
    finally:
        await producer.stop()


def _run(topic_prefix: str, name: str, monkeypatch, align_ms: int) -> tuple[int, list]:
    small, big = f"{topic_prefix}{name}-small", f"{topic_prefix}{name}-big"
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in (small, big)])
    admin.close()
    asyncio.run(_produce({small: 100, big: 2000}, 1_700_000_000_000))
    monkeypatch.setenv("SANDAN_STREAM_ALIGN_MS", str(align_ms))
    monkeypatch.setenv("SANDAN_STREAM_BATCH", str(BATCH))
    handled: list = []
    worst = 0

    async def main():
        worker = PartitionWorker(name, [small, big], aligned=[small, big])

        def exit_process(code: int) -> None:
            raise Exited(code)

        worker.guard = type(worker.guard)(exit_process)
        last = {small: None, big: None}
        left = {small: RECORDS, big: RECORDS}
        done = asyncio.Event()

        async def handle(records) -> None:
            nonlocal worst
            for r in records:
                handled.append((r.topic, r.offset))
                last[r.topic] = r.timestamp
                left[r.topic] -= 1
            if all(left.values()) and None not in last.values():  # both still have more to read
                worst = max(worst, abs(last[small] - last[big]))
            if not any(left.values()):
                done.set()

        await run_until(worker, handle, done, lambda: f"records left unhandled: {left}", WAIT_S)

    asyncio.run(main())
    return worst, handled


def test_aligned_inputs_stay_within_the_skew_and_every_record_is_handled_once(stack, topic_prefix, monkeypatch):
    worst, handled = _run(topic_prefix, "runtime-aligned", monkeypatch, SKEW_MS)
    assert sorted(handled) == sorted((t, n) for t in {t for t, _ in handled} for n in range(RECORDS))
    assert len({t for t, _ in handled}) == 2
    # checked after every batch, an input is let through at most SKEW_MS ahead, and the next batch
    # (BATCH records 1 ms apart) takes it at most BATCH * SPACING_MS further
    assert worst <= SKEW_MS + BATCH * SPACING_MS, f"one input ran {worst} ms ahead of the other"


def test_without_alignment_the_small_records_run_ahead(stack, topic_prefix, monkeypatch):
    """The case the alignment is for: the same backlog read as fetched."""
    worst, handled = _run(topic_prefix, "runtime-unaligned", monkeypatch, 0)
    assert len(handled) == 2 * RECORDS
    assert worst > 2 * (SKEW_MS + BATCH * SPACING_MS), f"unaligned inputs stayed within {worst} ms"
