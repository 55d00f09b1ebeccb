"""`python -m bench.restore`: how fast a worker rebuilds its table stores from the changelog.

N pending declarations (a match bucket holding order, payment and inventory, waiting for its
waybill: the table value order_match keeps for it) are written to a compacted changelog of P
partitions; then an empty worker table (RocksDB, SANDAN_ROCKSDB_MEMORY_MB) restores every
partition, as a worker does whose state folder was lost. Prints one JSON object with the
restore time and the figure to compare with the goal: seconds per million pending
declarations (under 60).

    python -m bench.restore [--declarations 200000] [--partitions 4]

The buckets are copies of one generated bucket with its orderNo replaced in place (same
length, so the Avro bytes stay valid).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

from services.common import changelogs, config, kafka_io
from services.common.avro import codec
from services.common.changelog_table import ChangelogTable
from services.order_match import bucket_store, matcher
from services.tools import generator, runs

from bench.pipeline import say


def buckets(count: int):
    """(orderNo, encoded bucket) of ``count`` distinct pending declarations."""
    s = generator.generate(1, fault_share=0, seed=5)[0]
    bucket = matcher.new_bucket(s.order["orderNo"])
    for doc in (s.order, s.payment, s.inventory):
        matcher.apply(bucket, doc, 0, 10**12)
    order_no = s.order["orderNo"]
    raw = codec().encode(bucket_store.SCHEMA, bucket)
    for i in range(count):
        new_no = f"{order_no[:-12]}R{i:011d}"
        yield new_no, raw.replace(order_no.encode(), new_no.encode())


async def produce(topic: str, count: int, partitions: int) -> tuple[float, int]:
    from aiokafka import AIOKafkaProducer

    kafka = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", linger_ms=20,
                             max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024)
    await kafka.start()
    started, size = time.monotonic(), 0
    try:
        pending = []
        for i, (order_no, raw) in enumerate(buckets(count)):
            size = len(raw)
            pending.append(await kafka.send(topic, value=raw, key=order_no.encode(), partition=i % partitions))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await kafka.stop()
    return time.monotonic() - started, size


def run(count: int, partitions: int) -> dict:
    prefix = f"benchrestore{time.strftime('%Y%m%d%H%M%S')}-"
    topic = f"{prefix}restore-changelog"
    folder = Path(config.get("SANDAN_LOCAL_DIR")) / "bench" / prefix.rstrip("-")
    changelogs.declare_topics({topic: partitions})
    try:
        produced_s, bucket_bytes = asyncio.run(produce(topic, count, partitions))
        say(f"bench-restore: {count} pending declarations on {partitions} partitions produced in {produced_s:.0f}s")
        table = ChangelogTable(topic, folder, memory_mb=config.get_int("SANDAN_ROCKSDB_MEMORY_MB"))
        started, cpu = time.monotonic(), time.process_time()
        applied = asyncio.run(table.restore(kafka_io.bootstrap(), range(partitions)))
        seconds, cpu_s = time.monotonic() - started, time.process_time() - cpu
        rows = sum(1 for _ in table.items())
        table.close()
    finally:
        runs.delete_topics([topic])
        shutil.rmtree(folder, ignore_errors=True)
    if applied != count or rows != count:
        raise SystemExit(f"bench-restore: applied {applied}, rows {rows}, expected {count}")
    return {
        "pending_declarations": count, "partitions": partitions, "bucket_bytes": bucket_bytes,
        "store": "rocksdb", "rocksdb_memory_mb": config.get_int("SANDAN_ROCKSDB_MEMORY_MB"),
        "restore_seconds": round(seconds, 2), "restore_cpu_seconds": round(cpu_s, 2),
        "records_per_second": round(count / seconds),
        "seconds_per_million_pending_declarations": round(seconds * 1_000_000 / count, 1),
        "goal_seconds_per_million": 60, "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--declarations", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    json.dump(run(args.declarations, args.partitions), sys.stdout)
    print()


if __name__ == "__main__":
    main()
