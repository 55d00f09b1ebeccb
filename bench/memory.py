"""`make bench-memory`: a million pending declarations in order_match's RocksDB table, and the
worker's resident memory while they pile up.

One order_match worker (SANDAN_STORE=rocksdb://, the default) takes N declarations that each
have their order and wait for the other three documents (the match timeout is set far away,
so none expires during the run). The worker's RSS is sampled as the table grows; the result
says whether it stayed under ``--bound-mb``, how much it grew per pending declaration, and
how big a pending declaration is in the table (encoded bucket bytes, on-disk bytes).

    python -m bench.memory [--declarations 1000000] [--bound-mb 400]

The orders are copies of a few thousand generated ones with their guid and orderNo replaced
in place (same lengths, so the Avro bytes stay valid): producing a million takes seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from services.common import config, kafka_io, topics
from services.tools import generator, runs
from services.common.avro import codec
from services.demo.processes import ServiceProcess, service_env
from services.order_match import matcher

from bench import load as load_mod, procstats
from bench.pipeline import Supervisor, say


def orders(count: int, seed: int = 11):
    """(orderNo, wire record) of ``count`` distinct orders."""
    wire = codec()
    templates = [(s.order["guid"], s.order["orderNo"], wire.encode("sandan.ceb.Order", s.order))
                 for s in generator.generate(2000, fault_share=0, seed=seed)]
    for i in range(count):
        guid, order_no, raw = templates[i % len(templates)]
        new_no = f"{order_no[:-12]}M{i:011d}"                # same length as the generator's orderNo
        new_guid = f"{guid[:-12]}{i:012d}"
        yield new_no, raw.replace(order_no.encode(), new_no.encode()).replace(guid.encode(), new_guid.encode())


def bucket_sizes() -> dict[str, int]:
    """Bytes of one encoded bucket (the table value) holding 1, 2 and 3 of a declaration's documents."""
    wire = codec()
    s = generator.generate(1, fault_share=0, seed=3)[0]
    bucket = matcher.new_bucket(s.order["orderNo"])
    sizes = {}
    for n, doc in enumerate((s.order, s.payment, s.logistics), 1):
        matcher.apply(bucket, doc, 0, 10**12)
        sizes[f"{n}_documents"] = len(wire.encode("sandan.MatchBucket", bucket))
    return sizes


async def produce(count: int) -> float:
    kafka = load_mod.producer()
    await kafka.start()
    started = time.monotonic()
    try:
        topic = topics.name("documents.order")
        pending = []
        for order_no, raw in orders(count):
            pending.append(await kafka.send(topic, value=raw, key=order_no.encode()))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await kafka.stop()
    return time.monotonic() - started


def changelog_records(consumer, topic: str) -> int:
    from kafka import TopicPartition
    parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
    return sum(consumer.end_offsets(parts).values()) if parts else 0


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(count: int, bound_mb: float, keep: bool) -> dict:
    from kafka import KafkaConsumer

    prefix = f"benchmem{time.strftime('%Y%m%d%H%M%S')}-"
    os.environ["SANDAN_TOPIC_PREFIX"] = prefix
    run_dir = Path(config.get("SANDAN_LOCAL_DIR")) / "bench" / prefix.rstrip("-")
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"bench-memory: run {prefix.rstrip('-')}, {count} pending declarations; logs in {run_dir}")
    kafka_io.create_topics()
    env = service_env(prefix, SANDAN_LOCAL_DIR=str(run_dir), SANDAN_STORE="rocksdb://",
                      SANDAN_MATCH_TIMEOUT=str(30 * 24 * 3600), SANDAN_ORDER_MATCH_METRICS_PORT="0")
    worker = ServiceProcess("order-match", ["worker", "order-match"], env, run_dir).start()
    supervisor = Supervisor([worker])
    changelog = f"{prefix}sandan-order-match-match-buckets-changelog"
    consumer = KafkaConsumer(bootstrap_servers=config.get("SANDAN_KAFKA_BOOTSTRAP"), group_id=None)
    samples: list[dict] = []
    try:
        started = time.monotonic()  # the worker stores while the orders are still being produced
        produced_s = asyncio.run(produce(count))
        say(f"  {count} orders produced in {produced_s:.0f}s")
        last_progress, last = time.monotonic(), -1
        while True:
            supervisor.check()
            stored = changelog_records(consumer, changelog)
            samples.append({"s": round(time.monotonic() - started), "stored": stored,
                            "rss_mb": procstats.rss_mb(worker.proc.pid)})
            if stored >= count:
                break
            if stored != last:
                last, last_progress = stored, time.monotonic()
                say(f"  {stored}/{count} buckets stored, worker RSS {samples[-1]['rss_mb']} MB")
            elif time.monotonic() - last_progress > 120:
                raise SystemExit(f"bench-memory: the worker stopped storing at {stored}/{count}; see {worker.log}")
            time.sleep(5)
        time.sleep(5)  # settled: what it holds with every declaration pending
        final_rss, peak_rss = procstats.rss_mb(worker.proc.pid), procstats.peak_rss_mb(worker.proc.pid)
        tables = disk_bytes(run_dir / "state")
    finally:
        consumer.close()
        worker.stop()
    tenth = next((x for x in samples if x["stored"] >= count // 10), samples[0])
    growth = (final_rss - tenth["rss_mb"]) * 1024 * 1024 / max(1, count - tenth["stored"])
    result = {
        "pending_declarations": count, "bound_mb": bound_mb,
        "worker_rss_mb": {"final": final_rss, "peak": peak_rss, f"at_{tenth['stored']}": tenth["rss_mb"]},
        "within_bound": peak_rss <= bound_mb,
        "rss_growth_bytes_per_pending_declaration": round(growth, 1),
        "bucket_bytes": bucket_sizes(),
        "rocksdb_disk_bytes_per_pending_declaration": round(tables / count, 1),
        "rocksdb_disk_mb": round(tables / 1024 / 1024, 1),
        "seconds_to_store_all": samples[-1]["s"],
        "rss_samples": samples[:: max(1, len(samples) // 20)],
    }
    if not keep:
        runs.forget(prefix, run_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="order_match memory with many pending declarations (JSON)")
    parser.add_argument("--declarations", type=int, default=1_000_000)
    parser.add_argument("--bound-mb", type=float, default=400.0, help="the RSS the worker must stay under")
    parser.add_argument("--keep", action="store_true", help="keep the run's topics and table files")
    args = parser.parse_args()
    print(json.dumps(run(args.declarations, args.bound_mb, args.keep)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
