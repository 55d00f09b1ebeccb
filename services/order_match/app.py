"""order_match as a faust stream processor: the wiring around ``MatchProcessor``.

Flow: documents.{order,payment,logistics,inventory} (co-partitioned by orderNo) → one
bucket per orderNo in a changelog-backed table → verdicts, matched declarations, receipts,
dead letters. Expiry runs inside the stream too: a timer drops a tick into every partition
of ``order_match.ticks`` and the agent expires that partition's due declarations when the
tick arrives, so table writes always happen in stream context on the right partition.

Delivery is at-least-once: faust flushes the producer before it commits offsets, and every
effect is idempotent (a document seen twice is a no-op in the bucket; the quota is reserved
once per declaration id; verdicts carry the declaration id for consumers to de-duplicate).
"""
from __future__ import annotations

import heapq
import logging

import faust
import redis.asyncio as aioredis
from kafka.partitioner.default import murmur2

from services.common import config, metrics, streaming, topics
from services.common.avro import WireError, codec
from services.common.clock import now_ms
from services.common.deadletter import dead_letter
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.order_match.quota import RedisQuotaStore
from services.order_match.rates import load_rates
from services.order_match.rules import RuleSettings
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
    buckets = app.Table("match-buckets", default=None, key_type=bytes, value_type=bytes, partitions=partitions)
    source = app.topic(*(topics.name(t) for t in DOCUMENT_TOPICS), topics.name("order_match.ticks"),
                       key_type=bytes, value_type=bytes)
    out = streaming.output_topics(app)
    ticks_topic = topics.name("order_match.ticks")
    due: dict[int, list[tuple[int, str]]] = {}
    scanned_for: set = set()
    # Buckets whose INCOMPLETE verdicts a tick caused, by that tick's position: if the tick
    # comes again after a crash, its verdicts are emitted again (see matcher's docstring).
    tick_decisions: dict[str, list[str]] = {}
    m = metrics.order_match()

    def load(key: str) -> dict:
        raw = buckets.get(key.encode())
        return wire.decode(raw)[1] if raw is not None else matcher.new_bucket(key)

    def save(key: str, bucket: dict, partition: int) -> None:
        if not bucket["declarations"] and not bucket["waybills"]:
            buckets.pop(key.encode(), None)
            return
        buckets[key.encode()] = wire.encode("sandan.MatchBucket", bucket)
        wake = matcher.next_deadline(bucket, timeout_ms, replay_window_ms)
        if wake is None and all(d["status"] in matcher.CLOSED for d in bucket["declarations"]):
            wake = max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + retention_ms
        if wake is not None:
            heapq.heappush(due.setdefault(partition, []), (wake, key))

    async def publish(outputs) -> None:
        for o in outputs:
            await out[o.topic].send(key=o.key, value=wire.encode(o.schema, o.record))
            metrics.count_output(m, o)

    async def on_document(msg) -> None:
        try:
            _, doc = wire.decode(msg.value)
            key = doc["orderNo"].strip()
        except (WireError, KeyError, AttributeError) as exc:
            m.documents.labels(kind="unknown", outcome="undecodable").inc()
            await publish([dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "UNDECODABLE", None,
                                       str(exc))])
            return
        kind = matcher.kind_of(doc)
        try:
            bucket = load(key)
            now = now_ms()
            position = f"{msg.topic}:{msg.partition}:{msg.offset}"
            outputs = await streaming.with_retry(lambda: processor.on_document(bucket, doc, now, position), log)
            save(key, bucket, msg.partition)
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the partition
            log.exception("document %s on %s/%d@%d failed", doc.get("guid"), msg.topic, msg.partition, msg.offset)
            m.documents.labels(kind=kind, outcome="failed").inc()
            await publish([dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "PROCESSING_ERROR",
                                       None, f"{type(exc).__name__}: {exc}", doc.get("guid"))])
            return
        m.documents.labels(kind=kind, outcome="processed").inc()
        arrived = int(msg.timestamp * 1000) if msg.timestamp else now
        for o in outputs:
            if o.topic == "declarations.verdicts":  # latency counts from the producer's timestamp
                o.record["lastDocumentAt"] = arrived
        await publish(outputs)

    def rescan_if_reassigned(assigned: frozenset) -> None:
        if assigned == frozenset(scanned_for):
            return
        due.clear()
        scanned_for.clear()
        scanned_for.update(assigned)
        for raw_key, raw in buckets.items():
            key = raw_key.decode()
            partition = (murmur2(raw_key) & 0x7FFFFFFF) % partitions  # the producers' default partitioner
            if partition in assigned:
                bucket = wire.decode(raw)[1]
                wake = matcher.next_deadline(bucket, timeout_ms, replay_window_ms)
                heapq.heappush(due.setdefault(partition, []), (wake if wake is not None else 0, key))
                for decl in bucket["declarations"]:
                    if decl["status"] == matcher.INCOMPLETE and (decl.get("decidedBy") or "").startswith(ticks_topic):
                        tick_decisions.setdefault(decl["decidedBy"], []).append(key)

    async def on_tick(partition: int, position: str) -> None:
        assigned = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == ticks_topic)
        rescan_if_reassigned(assigned)
        now = now_ms()
        for key in tick_decisions.pop(position, []):
            raw = buckets.get(key.encode())
            if raw is not None:
                await publish(await processor.replay(wire.decode(raw)[1], position, now))
        heap = due.get(partition, [])
        seen: set[str] = set()
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if key in seen:
                continue
            seen.add(key)
            raw = buckets.get(key.encode())
            if raw is None:
                continue
            bucket = wire.decode(raw)[1]
            outputs = processor.expire(bucket, now, position=position)
            closed = bucket["declarations"] and all(d["status"] in matcher.CLOSED for d in bucket["declarations"])
            if closed and max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + retention_ms <= now:
                buckets.pop(key.encode(), None)  # retention over: forget the order number
            else:
                save(key, bucket, partition)
            await publish(outputs)
        m.pending.set(sum(len(h) for h in due.values()))
        # how late the earliest scheduled expiry is; stays ~0 unless expiry has stalled
        m.expiry_overdue.set(max(0, now - min((h[0][0] for h in due.values() if h), default=now)) / 1000)

    @app.agent(source, concurrency=1)
    async def match(stream):
        async for event in stream.events():
            msg = event.message
            if msg.topic == ticks_topic:
                await on_tick(msg.partition, f"{msg.topic}:{msg.partition}:{msg.offset}")
            else:
                await on_document(msg)

    @app.timer(interval=config.get_int("SANDAN_TICK_SECONDS"))
    async def tick():
        ticks = out.get("order_match.ticks")
        stamp = str(now_ms()).encode()
        for partition in range(partitions):
            await ticks.send(key=b"tick", value=stamp, partition=partition)

    streaming.watch_consumer_lag(app)
    app.sandan_processor = processor  # for tests
    return app
