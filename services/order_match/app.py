"""order_match as a faust stream processor: the wiring around ``MatchProcessor``.

Flow: documents.{order,payment,logistics,inventory} (co-partitioned by orderNo) → one
bucket per orderNo in a changelog-backed table → verdicts, matched declarations, receipts,
dead letters. Expiry runs inside the stream too: a timer drops a tick into every partition
of ``order_match.ticks`` and the agent expires that partition's due declarations when the
tick arrives, so table writes always happen in stream context on the right partition.

Documents are taken in batches (up to SANDAN_STREAM_BATCH, ``batch``): each bucket is read
from and written to the table once per batch, the declarations completed in the batch are
decided with one round trip to Redis, and the outputs go to the producer without waiting on
each. A batch that fails is taken again one document at a time, so that a bad document is
dead-lettered alone.

Delivery is at-least-once: faust flushes the producer before it commits offsets, and every
effect is idempotent (a document seen twice is a no-op in the bucket; the quota is reserved
once per declaration id; verdicts carry the declaration id for consumers to de-duplicate).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import faust
import redis.asyncio as aioredis
from kafka.partitioner.default import murmur2

from services.common import config, metrics, streaming, topics
from services.common.avro import WireError, codec
from services.common.clock import now_ms
from services.common.deadletter import dead_letter
from services.common.outputs import Output
from services.order_match import batch, matcher
from services.order_match.batch import Arrival
from services.order_match.processor import MatchProcessor
from services.order_match.quota import RedisQuotaStore
from services.order_match.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.stream_clock import StreamClock
from services.order_match.wakeup_store import WakeupStore
from services.order_match.waybills import RedisWaybillRegistry

log = logging.getLogger("sandan.order_match")
DOCUMENT_TOPICS = ("documents.order", "documents.payment", "documents.logistics", "documents.inventory")


def create_app() -> faust.App:
    partitions = config.get_int("SANDAN_TOPIC_PARTITIONS")
    app = streaming.new_app("order-match", store=config.get("SANDAN_STORE"), stream_wait_empty=True,
                            table_cleanup_interval=3600.0)
    wire = codec()
    settings = RuleSettings.from_env()
    timeout_ms = config.get_int("SANDAN_MATCH_TIMEOUT") * 1000
    retention_ms = config.get_int("SANDAN_MATCH_RETENTION") * 1000
    replay_window_ms = config.get_int("SANDAN_MATCH_REPLAY_WINDOW") * 1000
    redis = aioredis.from_url(config.get("SANDAN_REDIS_URL"))
    namespace = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}"
    processor = MatchProcessor(quota=RedisQuotaStore(redis, namespace), waybills=RedisWaybillRegistry(redis, namespace),
                               settings=settings, rates=load_rates(), timeout_ms=timeout_ms,
                               replay_window_ms=replay_window_ms)
    buckets = app.Table("match-buckets", default=None, key_type=bytes, value_type=bytes, partitions=partitions,
                        options=streaming.rocksdb_options())
    source = app.topic(*(topics.name(t) for t in DOCUMENT_TOPICS), topics.name("order_match.ticks"),
                       key_type=bytes, value_type=bytes)
    out = streaming.output_topics(app)
    ticks_topic = topics.name("order_match.ticks")
    wakeups = WakeupStore(Path(app.conf.datadir) / "wakeups")
    clock = StreamClock(tuple(topics.name(t) for t in DOCUMENT_TOPICS), config.get_int("SANDAN_MATCH_IDLE_SECONDS") * 1000)
    loaded_wake: dict[str, int | None] = {}  # the wake-up each bucket of this batch had when read: where its index entry is
    scanned_for: set = set()
    # Buckets whose INCOMPLETE verdicts a tick caused, by that tick's position: if the tick
    # comes again after a crash, its verdicts are emitted again (see matcher's docstring).
    tick_decisions: dict[str, list[str]] = {}
    m = metrics.order_match()

    # A batch writes up to a few hundred buckets at once; faust's default (100 changelog records
    # in flight) would stall the stream after every batch until most of them are sent.
    app.producer.buffer.max_messages = 4 * config.get_int("SANDAN_STREAM_BATCH")
    publisher = streaming.Publisher(app, wire, log, count=lambda o: metrics.count_output(m, o))
    publish = publisher.publish
    batch_size = config.get_int("SANDAN_STREAM_BATCH")
    batch_wait = config.get_int("SANDAN_STREAM_BATCH_WAIT_MS") / 1000

    def wake_of(bucket: dict) -> int | None:
        wake = matcher.next_deadline(bucket, timeout_ms, replay_window_ms)
        if wake is None and bucket["declarations"] and all(d["status"] in matcher.CLOSED
                                                          for d in bucket["declarations"]):
            wake = max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + retention_ms
        return wake

    def load(arrival: Arrival) -> dict:
        streaming.in_event(arrival.source)  # the table reads the input's partition
        raw = buckets.get(arrival.key.encode())
        bucket = wire.decode(raw)[1] if raw is not None else matcher.new_bucket(arrival.key)
        loaded_wake[arrival.key] = wake_of(bucket)
        return bucket

    def save(key: str, bucket: dict, event, indexed_wake: int | None = None) -> None:
        """Write the bucket (or forget an empty one); index its next wake-up if it moved."""
        streaming.in_event(event)  # written to the input's partition (and its changelog)
        partition = event.message.partition
        if not bucket["declarations"] and not bucket["waybills"]:
            buckets.pop(key.encode(), None)
            wakeups.move(partition, key, indexed_wake, None)
            return
        buckets[key.encode()] = wire.encode("sandan.MatchBucket", bucket)
        wakeups.move(partition, key, indexed_wake, wake_of(bucket))

    expected_schema = {topics.name(t): topics.BY_NAME[t].value for t in DOCUMENT_TOPICS}

    def arrival_of(event, now: int) -> Arrival | Output:
        """The document of a record, or the dead letter of a record that holds none."""
        msg = event.message
        try:
            name, doc = wire.decode(msg.value)
            if name != expected_schema.get(msg.topic):
                # a well-formed record of another kind (a verdict, a receipt ...) on a document topic
                raise WireError(f"{msg.topic} carries {expected_schema.get(msg.topic)} records, not {name}")
            key = doc["orderNo"].strip()
        except (WireError, KeyError, AttributeError) as exc:
            m.documents.labels(kind="unknown", outcome="undecodable").inc()
            return dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "UNDECODABLE", None, str(exc))
        arrived = int(msg.timestamp * 1000) if msg.timestamp else now
        clock.read(msg.topic, msg.partition, arrived, now)
        return Arrival(key, doc, msg.value, f"{msg.topic}:{msg.partition}:{msg.offset}", arrived, event)

    def keep(done: batch.Batch) -> None:
        for key, (bucket, arrival) in done.buckets.items():
            save(key, bucket, arrival.source, loaded_wake.pop(key, None))
        loaded_wake.clear()

    async def on_documents(events) -> None:
        now = now_ms()
        loaded_wake.clear()
        taken = [arrival_of(event, now) for event in events]
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
            msg = arrival.source.message
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
        for raw_key, raw in buckets.items():
            key = raw_key.decode()
            partition = (murmur2(raw_key) & 0x7FFFFFFF) % partitions  # the producers' default partitioner
            if partition in assigned:
                bucket = wire.decode(raw)[1]
                wake = wake_of(bucket)
                wakeups.add(partition, wake if wake is not None else 0, key)
                for decl in bucket["declarations"]:
                    if decl["status"] == matcher.INCOMPLETE and (decl.get("decidedBy") or "").startswith(ticks_topic):
                        tick_decisions.setdefault(decl["decidedBy"], []).append(key)

    async def on_tick(event) -> None:
        msg = event.message
        partition, position = msg.partition, f"{msg.topic}:{msg.partition}:{msg.offset}"
        streaming.in_event(event)
        assigned = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == ticks_topic)
        rescan_if_reassigned(assigned)
        wall = now_ms()
        now = clock.now(partition, wall)  # not past what has been read: see stream_clock
        for key in tick_decisions.pop(position, []):
            raw = buckets.get(key.encode())
            if raw is not None:
                await publish(await processor.replay(wire.decode(raw)[1], position, wall))
        for key in wakeups.due(partition, now):
            raw = buckets.get(key.encode())
            if raw is None:
                continue
            bucket = wire.decode(raw)[1]
            outputs = processor.expire(bucket, now, position=position)
            closed = bucket["declarations"] and all(d["status"] in matcher.CLOSED for d in bucket["declarations"])
            if closed and max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + retention_ms <= now:
                buckets.pop(key.encode(), None)  # retention over: forget the order number
            else:
                save(key, bucket, event)  # its wake-up was taken out of the index: index it again
            await publish(outputs)
        m.pending.set(len(wakeups))
        # how late the earliest scheduled wake-up is; stays ~0 unless expiry has stalled
        earliest = wakeups.earliest_ms()
        m.expiry_overdue.set(max(0, wall - (earliest if earliest is not None else wall)) / 1000)

    @app.agent(source, concurrency=1)
    async def match(stream):
        async for events in stream.take_events(batch_size, batch_wait):
            documents = []
            for event in events:
                if event.message.topic == ticks_topic:  # a tick sees every document before it settled
                    await on_documents(documents)
                    documents = []
                    await on_tick(event)
                else:
                    documents.append(event)
            await on_documents(documents)

    @app.timer(interval=config.get_int("SANDAN_TICK_SECONDS"))
    async def tick():
        ticks = out.get("order_match.ticks")
        stamp = str(now_ms()).encode()
        for partition in range(partitions):
            await ticks.send(key=b"tick", value=stamp, partition=partition)

    streaming.watch_consumer_lag(app)
    app.sandan_processor = processor  # for tests
    return app
