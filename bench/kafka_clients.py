"""The Kafka client's own cost per record on sandan's workload: aiokafka against confluent-kafka.

Issue 19 asks for this comparison before any switch of client. A stream worker's Kafka work
per record is: read it (read_committed), write its outputs inside the task's transaction, and
at the end of a batch add the input offsets to that transaction and commit it, one
transactional producer per input partition. This benchmark does exactly that with nothing in
between (each input record written once to the same partition of an output topic), so what it
measures is the client: CPU seconds of the process (every thread: librdkafka works in threads
of its own) per record, and records per second.

Variants (each in a process of its own, alternated over ``--rounds``):

* ``aiokafka``: the runtime today (``partition_worker``): ``getmany``, ``await producer.send``
  per record (a future each), ``send_offsets_to_transaction`` and ``commit_transaction``.
* ``aiokafka-batch``: the same with a batch per partition (``create_batch``/``send_batch``;
  tried in the runtime in commit ``116d398``, not kept: bench/RESULTS.md).
* ``confluent``: confluent-kafka as an asyncio runtime would drive it: ``consume`` and the
  transaction calls (which block) in a thread, ``produce`` inline (it only queues).
* ``confluent-aio``: confluent-kafka 2.16's own asyncio classes (``AIOConsumer``, ``AIOProducer``).
* ``*-read``: reading alone (no producer), for the split between the two directions.

``python -m bench.kafka_clients [--records 200000] [--rounds 2]``: one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid

from bench import machine
from services.common import config

VARIANTS = ("aiokafka", "aiokafka-batch", "confluent", "confluent-aio", "aiokafka-read", "confluent-read")
RECORD_BYTES = 570  # a document record of `make bench` (its raw-Kafka line: 573 bytes on average)


def worker_settings() -> tuple[int, int, int]:
    """The stream workers' own producer and consumer settings (partition_worker), so both clients
    are measured as a worker would run them: linger ms, batch bytes, fetch wait ms."""
    return (config.get_int("SANDAN_KAFKA_LINGER_MS"), config.get_int("SANDAN_KAFKA_BATCH_BYTES"),
            config.get_int("SANDAN_FETCH_MAX_WAIT_MS"))


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the process
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU from just before the consumer is made (its client fetches ahead in the background
    from the moment it has joined, so a later start would miss reads) to the last commit; the
    producers' start-up is left out. Wall time from the first record in hand, so the group
    join's wait is not counted as slowness."""

    def __init__(self) -> None:
        self.cpu0, self.wall0 = cpu_s(), None

    def start(self) -> None:
        if self.wall0 is None:
            self.wall0 = time.perf_counter()

    def result(self, records: int) -> dict:
        cpu, wall = cpu_s() - self.cpu0, time.perf_counter() - self.wall0
        return {"records": records, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                "cpu_us_per_record": round(cpu / records * 1e6, 2), "records_per_s": round(records / wall)}


# -- aiokafka ----------------------------------------------------------------------------------

async def run_aiokafka(args, mode: str) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    group = f"{args.topic_in}-{mode}-{uuid.uuid4().hex[:8]}"
    linger_ms, batch_bytes, wait_ms = worker_settings()
    producers: dict[int, AIOKafkaProducer] = {}
    if mode != "aiokafka-read":
        for p in range(args.partitions):
            producers[p] = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True,
                                            transactional_id=f"{group}-{p}", linger_ms=linger_ms,
                                            max_batch_size=batch_bytes, max_request_size=max(batch_bytes * 4, 1_000_000))
            await producers[p].start()
    meter, done = Meter(), 0
    consumer = AIOKafkaConsumer(args.topic_in, bootstrap_servers=args.bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed", fetch_max_wait_ms=wait_ms)
    await consumer.start()
    try:
        while done < args.records:
            fetched = await consumer.getmany(timeout_ms=100, max_records=args.batch)
            if not fetched:
                continue
            meter.start()
            if mode == "aiokafka-read":
                done += sum(len(records) for records in fetched.values())
                continue
            for tp, records in fetched.items():
                producer = producers[tp.partition]
                await producer.begin_transaction()
                if mode == "aiokafka":
                    for r in records:
                        await producer.send(args.topic_out, value=r.value, key=r.key, partition=tp.partition)
                else:
                    batch = producer.create_batch()
                    for r in records:
                        if batch.append(key=r.key, value=r.value, timestamp=None) is None:
                            await producer.send_batch(batch, args.topic_out, partition=tp.partition)
                            batch = producer.create_batch()
                            batch.append(key=r.key, value=r.value, timestamp=None)
                    await producer.send_batch(batch, args.topic_out, partition=tp.partition)
                await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
                await producer.commit_transaction()
                done += len(records)
        return meter.result(done)
    finally:
        await consumer.stop()
        for producer in producers.values():
            await producer.stop()


# -- confluent-kafka ---------------------------------------------------------------------------

def _consumer_conf(args, group: str) -> dict:
    return {"bootstrap.servers": args.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "fetch.wait.max.ms": worker_settings()[2]}


def _producer_conf(args, tid: str) -> dict:
    linger_ms, batch_bytes, _ = worker_settings()
    return {"bootstrap.servers": args.bootstrap, "transactional.id": tid, "enable.idempotence": True, "acks": "all",
            "linger.ms": linger_ms, "batch.size": batch_bytes}


def _by_partition(messages) -> dict[int, list]:
    out: dict[int, list] = {}
    for m in messages:
        if m.error() is not None:
            raise RuntimeError(f"consume: {m.error()}")
        out.setdefault(m.partition(), []).append(m)
    return out


async def run_confluent(args, mode: str) -> dict:
    from confluent_kafka import Consumer, Producer, TopicPartition
    group = f"{args.topic_in}-{mode}-{uuid.uuid4().hex[:8]}"
    producers: dict[int, Producer] = {}
    if mode != "confluent-read":
        for p in range(args.partitions):
            producers[p] = Producer(_producer_conf(args, f"{group}-{p}"))
            await asyncio.to_thread(producers[p].init_transactions, 30)
    meta = None
    meter, done = Meter(), 0
    consumer = Consumer(_consumer_conf(args, group))
    consumer.subscribe([args.topic_in])
    try:
        while done < args.records:
            messages = await asyncio.to_thread(consumer.consume, args.batch, 0.1)
            if not messages:
                continue
            meter.start()
            if mode == "confluent-read":
                _by_partition(messages)  # raises on an error record
                done += len(messages)
                continue
            meta = meta or consumer.consumer_group_metadata()
            for p, records in _by_partition(messages).items():
                producer = producers[p]
                producer.begin_transaction()  # local state only: no round trip
                for m in records:
                    producer.produce(args.topic_out, value=m.value(), key=m.key(), partition=p)
                offsets = [TopicPartition(args.topic_in, p, records[-1].offset() + 1)]
                await asyncio.to_thread(producer.send_offsets_to_transaction, offsets, meta, 30)
                await asyncio.to_thread(producer.commit_transaction, 30)
                done += len(records)
        return meter.result(done)
    finally:
        consumer.close()
        for producer in producers.values():
            producer.flush(5)


async def run_confluent_aio(args, mode: str) -> dict:
    from confluent_kafka import TopicPartition
    from confluent_kafka.aio import AIOConsumer, AIOProducer
    group = f"{args.topic_in}-{mode}-{uuid.uuid4().hex[:8]}"
    producers = {}
    for p in range(args.partitions):
        producers[p] = AIOProducer(_producer_conf(args, f"{group}-{p}"))
        await producers[p].init_transactions(30)
    meta = None
    meter, done = Meter(), 0
    consumer = AIOConsumer(_consumer_conf(args, group))
    await consumer.subscribe([args.topic_in])
    try:
        while done < args.records:
            messages = await consumer.consume(args.batch, 0.1)
            if not messages:
                continue
            meter.start()
            meta = meta or await consumer.consumer_group_metadata()
            for p, records in _by_partition(messages).items():
                producer = producers[p]
                await producer.begin_transaction()
                for m in records:
                    await producer.produce(args.topic_out, value=m.value(), key=m.key(), partition=p)
                offsets = [TopicPartition(args.topic_in, p, records[-1].offset() + 1)]
                await producer.send_offsets_to_transaction(offsets, meta, 30)
                await producer.commit_transaction(30)
                done += len(records)
        return meter.result(done)
    finally:
        await consumer.close()
        for producer in producers.values():
            await producer.close()


# -- the run -----------------------------------------------------------------------------------

def fill(args) -> None:
    """The input topic, written once for every variant (not measured)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for name in (args.topic_in, args.topic_out):
        admin.create_topics([NewTopic(name, args.partitions, 1)])[name].result(30)
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 256 * 1024})
    value = os.urandom(RECORD_BYTES)
    for i in range(args.records):
        while True:
            try:
                producer.produce(args.topic_in, value=value, key=b"%016d" % i, partition=i % args.partitions)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("the input topic was not written in 60 s")


def drop(args) -> None:
    from confluent_kafka.admin import AdminClient
    AdminClient({"bootstrap.servers": args.bootstrap}).delete_topics([args.topic_in, args.topic_out])


def child(args) -> dict:
    variant = args.child
    if variant.startswith("aiokafka"):
        return asyncio.run(run_aiokafka(args, variant))
    if variant == "confluent-aio":
        return asyncio.run(run_confluent_aio(args, variant))
    return asyncio.run(run_confluent(args, variant))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500, help="records per fetch, as SANDAN_STREAM_BATCH")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--bootstrap", default=config.get("SANDAN_KAFKA_BOOTSTRAP"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--topic-in", help=argparse.SUPPRESS)
    ap.add_argument("--topic-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    stamp = time.strftime("%Y%m%d%H%M%S")
    for rnd in range(args.rounds):
        for variant in variants:
            # a topic pair of its own per run: no variant reads what another one left
            names = [f"bench-clients-{stamp}-{rnd}-{variant}-{side}" for side in ("in", "out")]
            args.topic_in, args.topic_out = names
            fill(args)
            cmd = [sys.executable, "-m", "bench.kafka_clients", "--child", variant, "--records", str(args.records),
                   "--partitions", str(args.partitions), "--batch", str(args.batch), "--bootstrap", args.bootstrap,
                   "--topic-in", names[0], "--topic-out", names[1]]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            drop(args)
            if done.returncode != 0:
                print(f"{variant}: failed: {done.stderr.strip()[-1500:]}", file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            runs[variant].append(row)
            print(f"round {rnd + 1} {variant}: {row}", file=sys.stderr, flush=True)
    summary = {v: {"cpu_us_per_record": round(statistics.median(r["cpu_us_per_record"] for r in rows), 2),
                   "records_per_s": round(statistics.median(r["records_per_s"] for r in rows))}
               for v, rows in runs.items()}
    base = summary.get("aiokafka") or summary.get("aiokafka-read")
    for v, s in summary.items():
        ref = summary["aiokafka-read"] if v.endswith("-read") and "aiokafka-read" in summary else base
        if ref:
            s["cpu_over_aiokafka"] = round(s["cpu_us_per_record"] / ref["cpu_us_per_record"], 3)
    print(json.dumps({"machine": machine.describe(),
                      "load_average_at_start": os.getloadavg()[0], "records": args.records,
                      "partitions": args.partitions, "batch": args.batch, "record_bytes": RECORD_BYTES,
                      "summary": summary, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
