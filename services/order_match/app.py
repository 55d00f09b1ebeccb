"""order_match as a stream worker (``partition_worker``): the wiring around ``MatchProcessor``.

Flow: documents.{order,payment,logistics,inventory} (co-partitioned by orderNo) → one
bucket per orderNo in a changelog-backed table → verdicts, matched declarations, receipts,
dead letters. Expiry runs inside the stream too: a timer drops a tick into every partition
of ``order_match.ticks`` and the agent expires that partition's due declarations when the
tick arrives, so table writes always happen in stream context on the right partition.

Documents are taken in batches (what one fetch brings, up to SANDAN_STREAM_BATCH): each bucket
is read once per batch and written to the table once per commit (``bucket_store``), the
declarations completed in the batch are decided with one round trip to Redis, and the
outputs go to the producer without waiting on each. A batch that fails is taken again one document at a time, so that a bad document is
dead-lettered alone.

Delivery is at-least-once: the worker flushes the producer before it commits offsets, and every
effect is idempotent (a document seen twice is a no-op in the bucket; the quota is reserved
once per declaration id; verdicts carry the declaration id for consumers to de-duplicate).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from kafka.partitioner.default import murmur2

from services.common import config, metrics, streaming, topics
from services.common.avro import WireError, codec
from services.common.changelog_table import ChangelogTable
from services.common.clock import now_ms
from services.common.deadletter import dead_letter
from services.common.outputs import Output
from services.common.partition_worker import PartitionWorker
from services.order_match import batch, matcher
from services.order_match.batch import Arrival
from services.order_match.bucket_store import BucketStore
from services.common.customs_numbers import RedisCustomsNumbers
from services.order_match.processor import MatchProcessor
from services.order_match.quota import RedisQuotaStore
from services.order_match.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.stream_clock import StreamClock
from services.order_match.wakeup_store import WakeupStore
from services.order_match.waybills import RedisWaybillRegistry

log = logging.getLogger("sandan.order_match")
DOCUMENT_TOPICS = ("documents.order", "documents.payment", "documents.logistics", "documents.inventory")


TABLE = "match-buckets"


def create_worker() -> tuple[PartitionWorker, Callable[[list], Awaitable[None]]]:
    """The worker and its batch handler (``sandan worker order-match`` runs them)."""
    partitions = config.get_int("SANDAN_TOPIC_PARTITIONS")
    name = "order-match"
    folder = streaming.state_folder(name)
    buckets = ChangelogTable(changelog_topic(), None if config.get("SANDAN_STORE").startswith("memory") else folder / TABLE,
                             memory_mb=config.get_int("SANDAN_ROCKSDB_MEMORY_MB"))
    ticks_topic = topics.name("order_match.ticks")
    worker = PartitionWorker(name, [*(topics.name(t) for t in DOCUMENT_TOPICS), ticks_topic], tables=[buckets])
    wire = codec()
    settings = RuleSettings.from_env()
    timeout_ms = config.get_int("SANDAN_MATCH_TIMEOUT") * 1000
    retention_ms = config.get_int("SANDAN_MATCH_RETENTION") * 1000
    replay_window_ms = config.get_int("SANDAN_MATCH_REPLAY_WINDOW") * 1000
    redis = aioredis.from_url(config.get("SANDAN_REDIS_URL"))
    namespace = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}"
    processor = MatchProcessor(quota=RedisQuotaStore(redis, namespace), waybills=RedisWaybillRegistry(redis, namespace),
                               settings=settings, rates=load_rates(), timeout_ms=timeout_ms,
                               replay_window_ms=replay_window_ms, numbers=RedisCustomsNumbers(redis, namespace))
    store = BucketStore(buckets, wire)
    worker.before_commit.append(store.flush)
    wakeups = WakeupStore(folder / "wakeups")
    clock = StreamClock(tuple(topics.name(t) for t in DOCUMENT_TOPICS), config.get_int("SANDAN_MATCH_IDLE_SECONDS") * 1000)
    loaded_wake: dict[str, int | None] = {}  # the wake-up each bucket of this batch had when read: where its index entry is
    scanned_for: set = set()
    # Buckets whose INCOMPLETE verdicts a tick caused, by that tick's position: if the tick
    # comes again after a crash, its verdicts are emitted again (see matcher's docstring).
    tick_decisions: dict[str, list[str]] = {}
    m = metrics.order_match()

    publisher = streaming.Publisher(worker.send, wire, count=lambda o: metrics.count_output(m, o))
    publish = publisher.publish

    def wake_of(bucket: dict) -> int | None:
        wake = matcher.next_deadline(bucket, timeout_ms, replay_window_ms)
        if wake is None and bucket["declarations"] and all(d["status"] in matcher.CLOSED
                                                          for d in bucket["declarations"]):
            wake = max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + retention_ms
        return wake

    def load(arrival: Arrival) -> dict:
        bucket = store.take(arrival.key) or matcher.new_bucket(arrival.key)
        loaded_wake[arrival.key] = wake_of(bucket)
        return bucket

    def save(key: str, bucket: dict, partition: int, indexed_wake: int | None = None) -> None:
        """Write the bucket (or forget an empty one); index its next wake-up if it moved."""
        if not bucket["declarations"] and not bucket["waybills"]:
            store.delete(partition, key)
            wakeups.move(partition, key, indexed_wake, None)
            return
        store.put(partition, key, bucket)
        wakeups.move(partition, key, indexed_wake, wake_of(bucket))

    expected_schema = {topics.name(t): topics.BY_NAME[t].value for t in DOCUMENT_TOPICS}

    def arrival_of(msg, now: int) -> Arrival | Output:
        """The document of a record, or the dead letter of a record that holds none."""
        try:
            name, doc = wire.decode(msg.value)
            if name != expected_schema.get(msg.topic):
                # a well-formed record of another kind (a verdict, a receipt ...) on a document topic
                raise WireError(f"{msg.topic} carries {expected_schema.get(msg.topic)} records, not {name}")
            key = doc["orderNo"].strip()
        except (WireError, KeyError, AttributeError) as exc:
            m.documents.labels(kind="unknown", outcome="undecodable").inc()
            return dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "UNDECODABLE", None, str(exc))
        arrived = msg.timestamp if msg.timestamp and msg.timestamp > 0 else now
        clock.read(msg.topic, msg.partition, arrived, now)
        return Arrival(key, doc, msg.value, f"{msg.topic}:{msg.partition}:{msg.offset}", arrived, msg)

    def keep(done: batch.Batch) -> None:
        for key, (bucket, arrival) in done.buckets.items():
            save(key, bucket, arrival.source.partition, loaded_wake.pop(key, None))
        loaded_wake.clear()

    async def on_documents(records) -> None:
        if not records:
            return
        now = now_ms()
        loaded_wake.clear()
        taken = [arrival_of(record, now) for record in records]
        arrivals = [a for a in taken if isinstance(a, Arrival)]
        dead = [a for a in taken if not isinstance(a, Arrival)]
        try:
            done = await streaming.with_retry(lambda: batch.run(processor, arrivals, load, now), log)
            outputs = publisher.prepare(dead + done.outputs)  # encoded before the state is kept
        except Exception:  # noqa: BLE001 - find the document at fault: take them one by one
            log.exception("a batch of %d documents failed; taking them one at a time", len(arrivals))
            await publish(dead)
            for arrival in arrivals:
                await on_document(arrival)
            return
        keep(done)
        for kind, n in Counter(matcher.kind_of(a.doc) for a in arrivals).items():
            m.documents.labels(kind=kind, outcome="processed").inc(n)
        await publisher.send(outputs)

    async def on_document(arrival: Arrival) -> None:
        kind = matcher.kind_of(arrival.doc)
        try:
            done = await streaming.with_retry(lambda: batch.run(processor, [arrival], load, now_ms()), log)
            outputs = publisher.prepare(done.outputs)
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the partition
            msg = arrival.source
            log.exception("document %s on %s failed", arrival.doc.get("guid"), arrival.position)
            m.documents.labels(kind=kind, outcome="failed").inc()
            await publish([dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "PROCESSING_ERROR",
                                       None, f"{type(exc).__name__}: {exc}", arrival.doc.get("guid"))])
            return
        keep(done)
        m.documents.labels(kind=kind, outcome="processed").inc()
        await publisher.send(outputs)

    def rescan_if_reassigned(assigned: frozenset) -> None:
        if assigned == frozenset(scanned_for):
            return
        wakeups.clear()
        clock.forget()
        scanned_for.clear()
        scanned_for.update(assigned)
        for key, bucket in store.items():
            partition = (murmur2(key.encode()) & 0x7FFFFFFF) % partitions  # the producers' default partitioner
            if partition in assigned:
                wake = wake_of(bucket)
                wakeups.add(partition, wake if wake is not None else 0, key)
                for decl in bucket["declarations"]:
                    if decl["status"] == matcher.INCOMPLETE and (decl.get("decidedBy") or "").startswith(ticks_topic):
                        tick_decisions.setdefault(decl["decidedBy"], []).append(key)

    async def on_tick(msg) -> None:
        partition, position = msg.partition, f"{msg.topic}:{msg.partition}:{msg.offset}"
        rescan_if_reassigned(worker.partitions)
        wall = now_ms()
        now = clock.now(partition, wall)  # not past what has been read: see stream_clock
        for key in tick_decisions.pop(position, []):
            bucket = store.take(key)
            if bucket is not None:
                await publish(await processor.number(await processor.replay(bucket, position, wall), wall))
        expired: list[Output] = []
        for key in wakeups.due(partition, now):
            bucket = store.take(key)
            if bucket is None:
                continue
            expired += processor.expire(bucket, now, position=position)
            closed = bucket["declarations"] and all(d["status"] in matcher.CLOSED for d in bucket["declarations"])
            if closed and max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + retention_ms <= now:
                store.delete(partition, key)  # retention over: forget the order number
            else:
                save(key, bucket, partition)  # its wake-up was taken out of the index: index it again
        if expired:  # the numbers of all the tick's expired inventories in one round trip
            await publish(await streaming.with_retry(lambda: processor.number(expired, wall), log))
        m.pending.set(len(wakeups))
        # how late the earliest scheduled wake-up is; stays ~0 unless expiry has stalled
        earliest = wakeups.earliest_ms()
        m.expiry_overdue.set(max(0, wall - (earliest if earliest is not None else wall)) / 1000)

    async def handle(records: list) -> None:
        # Documents first, then ticks: a tick comes after every document fetched with it (the
        # stream clock, not the order of topics, decides what may expire).
        await on_documents([r for r in records if r.topic != ticks_topic])
        for record in records:
            if record.topic == ticks_topic:
                await on_tick(record)

    async def tick() -> None:
        stamp = str(now_ms()).encode()
        for partition in range(partitions):
            await worker.send(ticks_topic, b"tick", stamp, partition)

    worker.timer(config.get_int("SANDAN_TICK_SECONDS"), tick)
    worker.sandan_processor = processor  # for tests
    return worker, handle


def changelog_topic() -> str:
    """The table's changelog, named as faust named it (state carries over from faust-era workers)."""
    return f"{streaming.app_id('order-match')}-{TABLE}-changelog"
