"""returns as a faust stream processor: the wiring around ``ReturnsEngine``.

Flow: declarations.cleared, customs.reports, documents.cancel, documents.refund and
returns.arrivals (all keyed by orderNo) → one bucket per orderNo; warehouse.arrivals and
returns.waybills (keyed by logisticsNo) → one waybill entry per logisticsNo, which re-keys
parcels to their order; documents.delivery (CEB711) → arrivals on warehouse.arrivals.
Out: guarantee.commands (tax voids), receipts, the internal returns.* topics, dead letters;
quota releases go to Redis. Expiry runs in-stream on ticks into every partition of
``returns.ticks``, so each table is only written while handling a record of the partition
that owns the key.

At-least-once, effects before state: for each record the quota is released (idempotent
scripts), then the outputs are sent and acknowledged, and only then is the table written.
A crash in between repeats effects that are idempotent downstream (void command ids,
deterministic receipt guids, once-per-part quota releases) and never loses one.
"""
from __future__ import annotations

import logging

import faust
import redis.asyncio as aioredis
from kafka.partitioner.default import murmur2

from services.common import config, streaming, topics
from services.common.avro import WireError, codec
from services.common.clock import now_ms
from services.common.deadletter import dead_letter
from services.common.outputs import Output
from services.common.customs_numbers import RedisCustomsNumbers, number_outputs
from services.common.quota.store import RedisPartReleases, RedisQuotaStore
from services.returns import bucket as state
from services.returns import metrics, waybills
from services.returns.engine import (BUCKET_SOURCES, DELIVERY_SOURCE, SCHEMA_OF_SOURCE, WAYBILL_SOURCES,
                                     ReturnsEngine, Settings, Step, bucket_key, release_quota, waybill_key)
from services.returns.inputs import INVALID_FIELD, InputError
from services.returns.wakeups import Wakeups

log = logging.getLogger("sandan.returns")
TICKS = "returns.ticks"
BUCKETS, WAYBILLS = "bucket", "waybill"
TABLE_SCHEMA = {BUCKETS: "sandan.ReturnsBucket", WAYBILLS: "sandan.ReturnsWaybill"}


def create_app() -> faust.App:
    partitions = config.get_int("SANDAN_TOPIC_PARTITIONS")
    app = streaming.new_app("returns", store=config.get("SANDAN_STORE"))
    wire = codec()
    engine = ReturnsEngine(Settings.from_env())
    redis = aioredis.from_url(config.get("SANDAN_REDIS_URL"))
    namespace = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}"
    quota, parts = RedisQuotaStore(redis, namespace), RedisPartReleases(redis, namespace)
    numbers = RedisCustomsNumbers(redis, namespace)  # the CEB624/626 receipts carry the inventory's numbers
    tables = {kind: app.Table(name, default=None, key_type=bytes, value_type=bytes, partitions=partitions,
                                options=streaming.rocksdb_options())
              for kind, name in ((BUCKETS, "returns-buckets"), (WAYBILLS, "returns-waybills"))}
    short_of = {topics.name(s): s for s in (*BUCKET_SOURCES, *WAYBILL_SOURCES, DELIVERY_SOURCE, TICKS)}
    source = app.topic(*short_of, key_type=bytes, value_type=bytes)
    out = streaming.output_topics(app)
    wakeups = Wakeups()
    waiting: dict[int, int] = {}
    m = metrics.returns()

    def owner(key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions  # the producers' default partitioner

    def new_value(kind: str, key: str) -> dict:
        return state.new_bucket(key) if kind == BUCKETS else waybills.new_entry(key)

    def load(kind: str, key: str) -> dict:
        raw = tables[kind].get(key.encode())
        return wire.decode(raw)[1] if raw is not None else new_value(kind, key)

    def parcels_in(kind: str, value: dict) -> int:
        return state.parcels_waiting(value) if kind == BUCKETS else len(value["held"])

    def wake_of(kind: str, value: dict) -> int | None:
        return engine.next_wake(value) if kind == BUCKETS else waybills.next_wake(value)

    def pack(kind: str, value: dict) -> bytes | None:
        """The table value to write; None when nothing is left (the key is deleted)."""
        empty = (not value["declarations"] and not value["held"]) if kind == BUCKETS else waybills.is_empty(value)
        return None if empty else wire.encode(TABLE_SCHEMA[kind], value)

    def save(kind: str, key: str, value: dict, packed: bytes | None, partition: int, parcels_before: int) -> None:
        if packed is None:
            if key.encode() in tables[kind]:
                del tables[kind][key.encode()]
        else:
            tables[kind][key.encode()] = packed
            wake = wake_of(kind, value)
            if wake is not None:
                wakeups.push(partition, wake, kind, key)
        waiting[partition] = waiting.get(partition, 0) + parcels_in(kind, value) - parcels_before
        m.parcels_waiting.set(sum(n for p, n in waiting.items() if p in wakeups.partitions))

    async def send_all(encoded: list[tuple[Output, bytes]]) -> None:
        sent = [await out[o.topic].send(key=o.key, value=value) for o, value in encoded]
        for ack in sent:
            await ack

    def encode(step: Step) -> list[tuple[Output, bytes]]:
        return [(o, wire.encode(o.schema, o.record)) for o in step.outputs]

    async def run(step: Step, encoded: list[tuple[Output, bytes]]) -> None:
        """Quota first, then the records (acknowledged): the effects land before the state."""
        await streaming.with_retry(lambda: release_quota(step.releases, quota, parts), log)
        await streaming.with_retry(lambda: send_all(encoded), log)
        for o, _ in encoded:
            metrics.count_output(m, o)

    async def reject(msg, short: str, code: str, field: str | None, reason: str, guid: str | None = None) -> None:
        m.inputs.labels(source=short, outcome="dead_letter").inc()
        step = Step(outputs=[dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, field,
                                         reason, guid)])
        await run(step, encode(step))

    def plan(short: str, record: dict, msg, now: int):
        """(table kind, key, state, parcels waiting before, step) for one record; raises
        InputError for unusable input. The state is None when no table is touched."""
        if short == DELIVERY_SOURCE:
            return None, None, None, 0, engine.take_delivery(record)
        kind = BUCKETS if short in BUCKET_SOURCES else WAYBILLS
        key = bucket_key(record) if kind == BUCKETS else waybill_key(record)
        if not key:
            raise InputError(INVALID_FIELD, "orderNo" if kind == BUCKETS else "logisticsNo", "missing or empty")
        if owner(key) != msg.partition:  # keyed otherwise upstream: send it to the partition owning the key
            return None, None, None, 0, Step(outputs=[Output(short, key.encode(), SCHEMA_OF_SOURCE[short], record)])
        value = load(kind, key)
        before = parcels_in(kind, value)
        take = engine.take if kind == BUCKETS else engine.take_waybill
        return kind, key, value, before, take(value, short, record, msg.value, now)

    async def on_record(msg) -> None:
        short = short_of[msg.topic]
        guid = None
        try:
            name, record = wire.decode(msg.value)
            guid = record.get("guid") if isinstance(record, dict) else None
            if name != SCHEMA_OF_SOURCE[short]:
                raise InputError("WRONG_SCHEMA", "value",
                                 f"a {name} record on {short} (expected {SCHEMA_OF_SOURCE[short]})")
            now = now_ms()
            kind, key, value, before, step = plan(short, record, msg, now)
            await streaming.with_retry(lambda: number_outputs(numbers, step.outputs, now), log)
            encoded = encode(step)  # everything that can fail, before any effect
            packed = pack(kind, value) if value is not None else None
        except WireError as exc:
            await reject(msg, short, "UNDECODABLE", None, str(exc))
            return
        except InputError as exc:
            await reject(msg, short, exc.code, exc.field, exc.message, guid)
            return
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
            log.exception("record on %s/%d@%d failed", msg.topic, msg.partition, msg.offset)
            await reject(msg, short, "PROCESSING_ERROR", None, f"{type(exc).__name__}: {exc}", guid)
            return
        await run(step, encoded)
        if value is not None:
            save(kind, key, value, packed, msg.partition, before)
        m.inputs.labels(source=short, outcome="processed").inc()

    def rescan(assigned: frozenset[int]) -> None:
        wakeups.reset(assigned)
        waiting.clear()
        for kind, table in tables.items():
            for raw_key, raw in table.items():
                key = raw_key.decode()
                partition = owner(key)
                if partition in assigned:
                    value = wire.decode(raw)[1]
                    wakeups.push(partition, wake_of(kind, value) or 0, kind, key)
                    waiting[partition] = waiting.get(partition, 0) + parcels_in(kind, value)

    async def on_tick(partition: int) -> None:
        ticks_topic = topics.name(TICKS)
        assigned = frozenset(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == ticks_topic)
        if assigned != wakeups.partitions:
            rescan(assigned)
        now = now_ms()
        for kind, key in wakeups.due(partition, now):
            raw = tables[kind].get(key.encode())
            if raw is None:
                continue
            try:
                value = wire.decode(raw)[1]
                before = parcels_in(kind, value)
                step = engine.expire(value, now) if kind == BUCKETS else engine.expire_waybill(value, now)
                await streaming.with_retry(lambda: number_outputs(numbers, step.outputs, now), log)
                encoded, packed = encode(step), pack(kind, value)
            except Exception:  # noqa: BLE001 - a broken entry must not stop the others' expiry
                log.exception("expiry of %s %s failed", kind, key)
                continue
            await run(step, encoded)
            save(kind, key, value, packed, partition, before)

    @app.agent(source, concurrency=1)
    async def returns(stream):
        async for event in stream.events():
            msg = event.message
            if msg.topic == topics.name(TICKS):
                await on_tick(msg.partition)
            else:
                await on_record(msg)

    @app.timer(interval=config.get_int("SANDAN_RETURNS_TICK_SECONDS"))
    async def tick():
        stamp = str(now_ms()).encode()
        for partition in range(partitions):
            await out[TICKS].send(key=b"tick", value=stamp, partition=partition)

    app.sandan_engine = engine  # for tests
    streaming.watch_consumer_lag(app)
    return app
