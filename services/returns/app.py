"""returns as a stream worker (``partition_worker``): the wiring around ``ReturnsEngine``.

Flow: declarations.cleared, customs.reports, documents.cancel, documents.refund and
returns.arrivals (keyed by orderNo) → one bucket per orderNo; warehouse.arrivals and
returns.waybills (keyed by logisticsNo) → one waybill entry per logisticsNo, which re-keys
parcels to their order; documents.delivery (CEB711) → arrivals on warehouse.arrivals.
Out: guarantee.commands (tax voids), receipts, quota.releases, the internal returns.* topics,
dead letters; quota releases go to Redis. Expiry runs in-stream on ticks into every partition
of ``returns.ticks``.

One consumer group for both key spaces: every input topic has the same partition count and
the range assignor gives a worker the same partition numbers of each. Each table is
partitioned by its own key (buckets by orderNo, waybill entries by logisticsNo) and written
only while handling a record of the partition that owns the key; the two key spaces talk
through topics (returns.waybills, returns.arrivals), never by reading each other's table.

Effects before state: for each record the quota is released (idempotent scripts) and its
outputs go to the producer; at the end of the batch the producer is flushed and every output
checked, and only then are the batch's table changes written (their changelog records go out
before the offsets are committed). The state remembers which inputs it took, so a state
written without its outputs would swallow them on redelivery; this way a crash repeats effects
that are idempotent downstream (void command ids, deterministic receipt guids, once-per-part
quota releases) and never loses one.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kafka.partitioner.default import murmur2

from services.common import config, redis_client, streaming, topics
from services.common.avro import WireError, codec
from services.common.changelog_table import ChangelogTable
from services.common.clock import now_ms
from services.common.customs_numbers import RedisCustomsNumbers, number_outputs
from services.common.deadletter import dead_letter
from services.common.outputs import Output
from services.common.partition_worker import PartitionWorker
from services.common.quota.store import RedisPartReleases, RedisQuotaStore
from services.returns import bucket as state
from services.returns import metrics, waybills
from services.returns.engine import (BUCKET_SOURCES, DELIVERY_SOURCE, SCHEMA_OF_SOURCE, WAYBILL_SOURCES,
                                     ReturnsEngine, Settings, Step, bucket_key, release_quota, waybill_key)
from services.returns.inputs import INVALID_FIELD, InputError
from services.returns.wakeups import Wakeups

log = logging.getLogger("sandan.returns")
NAME = "returns"
TICKS = "returns.ticks"
BUCKETS, WAYBILLS = "bucket", "waybill"
TABLES = {BUCKETS: "returns-buckets", WAYBILLS: "returns-waybills"}
TABLE_SCHEMA = {BUCKETS: "sandan.ReturnsBucket", WAYBILLS: "sandan.ReturnsWaybill"}


class OutputNotDelivered(RuntimeError):
    """Kafka did not take an output: the batch's state must not be written nor its input committed."""


def changelog_topic(kind: str) -> str:
    """A table's changelog topic (``<app id>-returns-buckets-changelog``, ``...-returns-waybills-changelog``);
    the state already on these topics is the table's."""
    return f"{streaming.app_id(NAME)}-{TABLES[kind]}-changelog"


def create_worker() -> tuple[PartitionWorker, Callable[[list], Awaitable[None]]]:
    """The worker and its batch handler (``sandan worker returns`` runs them)."""
    returns = ReturnsWorker()
    return returns.worker, returns.handle


class ReturnsWorker:
    """One returns process: its partition worker, two tables, the stores and the steps of a batch."""

    def __init__(self) -> None:
        self.partitions = config.get_int("SANDAN_TOPIC_PARTITIONS")
        folder = streaming.state_folder(NAME)
        in_memory = config.get("SANDAN_STORE").startswith("memory")
        memory_mb = max(1, config.get_int("SANDAN_ROCKSDB_MEMORY_MB") // len(TABLES))  # the budget is the worker's
        self.tables = {kind: ChangelogTable(changelog_topic(kind), None if in_memory else folder / table,
                                            memory_mb=memory_mb)
                       for kind, table in TABLES.items()}
        self.short_of = {topics.name(s): s for s in (*BUCKET_SOURCES, *WAYBILL_SOURCES, DELIVERY_SOURCE)}
        self.ticks_topic = topics.name(TICKS)
        self.worker = PartitionWorker(NAME, [*self.short_of, self.ticks_topic], tables=list(self.tables.values()))
        self.wire = codec()
        self.engine = ReturnsEngine(Settings.from_env())
        redis = redis_client.connect()
        # the quota releases and numbers of a record on the replicas before its outputs go out
        self.replicated = redis_client.replica_wait(redis).after
        namespace = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}"
        self.quota, self.parts = RedisQuotaStore(redis, namespace), RedisPartReleases(redis, namespace)
        self.numbers = RedisCustomsNumbers(redis, namespace)  # the CEB624/626 receipts carry the inventory's numbers
        self.m = metrics.returns()
        self.publisher = streaming.Publisher(self.send, self.wire, count=lambda o: metrics.count_output(self.m, o))
        self.wakeups = Wakeups()
        self.waiting: dict[int, int] = {}  # parcels waiting, per partition (the gauge shows the owned ones)
        self.scanned: tuple[frozenset[int], int] | None = None
        # the batch's table writes, (kind, key) -> (partition, packed value or None, value), kept
        # back until its outputs are in Kafka; reads see them first
        self.changed: dict[tuple[str, str], tuple[int, bytes | None, dict]] = {}
        self.sent: list[asyncio.Future] = []  # the batch's output deliveries
        self.worker.timer(config.get_int("SANDAN_RETURNS_TICK_SECONDS"), self.tick)
        # the work since the last commit dropped: the schedule and counts are rebuilt from the tables
        self.worker.on_lost.append(lambda: setattr(self, "scanned", None))

    # --- a batch of records ------------------------------------------------------------------

    async def handle(self, records: list) -> None:
        self.rescan_if_reassigned()
        for record in records:
            if record.topic == self.ticks_topic:
                await self.on_tick(record.partition)
            else:
                await self.on_record(record)
        await self.settle()

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> asyncio.Future:
        delivery = await self.worker.send(topic, key, value, partition)
        self.sent.append(delivery)
        return delivery

    async def settle(self) -> None:
        """The batch's outputs into Kafka, then its table changes (effects before state)."""
        changed, self.changed = self.changed, {}
        sent, self.sent = self.sent, []
        if sent and await self.worker.deliver_outputs():
            for delivery in sent:
                if not delivery.done() or delivery.cancelled() or delivery.exception() is not None:
                    raise OutputNotDelivered(repr(delivery.exception() if delivery.done() and not delivery.cancelled()
                                                  else "not delivered by the flush"))
        for (kind, key), (partition, packed, value) in changed.items():
            if packed is None:
                self.tables[kind].delete(partition, key.encode())
                continue
            self.tables[kind].put(partition, key.encode(), packed)
            wake = self.wake_of(kind, value)
            if wake is not None:
                self.wakeups.push(partition, wake, kind, key)

    async def on_record(self, msg) -> None:
        short = self.short_of[msg.topic]
        guid = None
        try:
            name, record = self.wire.decode(msg.value)
            guid = record.get("guid") if isinstance(record, dict) else None
            if name != SCHEMA_OF_SOURCE[short]:
                raise InputError("WRONG_SCHEMA", "value",
                                 f"a {name} record on {short} (expected {SCHEMA_OF_SOURCE[short]})")
            now = now_ms()
            kind, key, value, before, step = self.plan(short, record, msg, now)
            await streaming.with_retry(lambda: number_outputs(self.numbers, step.outputs, now), log)
            encoded = self.publisher.prepare(step.outputs)  # everything that can fail, before any effect
            packed = self.pack(kind, value) if value is not None else None
        except WireError as exc:
            await self.reject(msg, short, "UNDECODABLE", None, str(exc))
            return
        except InputError as exc:
            await self.reject(msg, short, exc.code, exc.field, exc.message, guid)
            return
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
            log.exception("record on %s/%d@%d failed", msg.topic, msg.partition, msg.offset)
            await self.reject(msg, short, "PROCESSING_ERROR", None, f"{type(exc).__name__}: {exc}", guid)
            return
        await self.run(step, encoded)
        if value is not None and packed != self.stored(kind, key):  # a repeated input writes no changelog record
            self.keep(kind, key, value, packed, msg.partition, before)
        self.m.inputs.labels(source=short, outcome="processed").inc()

    def plan(self, short: str, record: dict, msg, now: int):
        """(table kind, key, state, parcels waiting before, step) for one record; raises
        InputError for unusable input. The state is None when no table is touched."""
        if short == DELIVERY_SOURCE:
            return None, None, None, 0, self.engine.take_delivery(record)
        kind = BUCKETS if short in BUCKET_SOURCES else WAYBILLS
        key = bucket_key(record) if kind == BUCKETS else waybill_key(record)
        if not key:
            raise InputError(INVALID_FIELD, "orderNo" if kind == BUCKETS else "logisticsNo", "missing or empty")
        if self.owner(key) != msg.partition:  # keyed otherwise upstream: send it to the partition owning the key
            return None, None, None, 0, Step(outputs=[Output(short, key.encode(), SCHEMA_OF_SOURCE[short], record)])
        value = self.load(kind, key)
        before = self.parcels_in(kind, value)
        take = self.engine.take if kind == BUCKETS else self.engine.take_waybill
        return kind, key, value, before, take(value, short, record, msg.value, now)

    async def run(self, step: Step, encoded: list[tuple[Output, bytes]]) -> None:
        """Quota first, then the records: the effects land before the state."""
        await streaming.with_retry(self.replicated(lambda: release_quota(step.releases, self.quota, self.parts)), log)
        await self.publisher.send(encoded)

    async def reject(self, msg, short: str, code: str, field: str | None, reason: str,
                     guid: str | None = None) -> None:
        self.m.inputs.labels(source=short, outcome="dead_letter").inc()
        step = Step(outputs=[dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, field,
                                         reason, guid)])
        await self.run(step, self.publisher.prepare(step.outputs))

    # --- table values ------------------------------------------------------------------------

    def owner(self, key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions  # the producers' default partitioner

    def stored(self, kind: str, key: str) -> bytes | None:
        """A key's value as the batch left it so far (a change kept back first, then the table)."""
        pending = self.changed.get((kind, key))
        return pending[1] if pending is not None else self.tables[kind].get(key.encode())

    def load(self, kind: str, key: str) -> dict:
        """Decoded afresh for every record: a record that fails halfway leaves nothing behind."""
        raw = self.stored(kind, key)
        if raw is not None:
            return self.wire.decode(raw)[1]
        return state.new_bucket(key) if kind == BUCKETS else waybills.new_entry(key)

    def parcels_in(self, kind: str, value: dict) -> int:
        return state.parcels_waiting(value) if kind == BUCKETS else len(value["held"])

    def wake_of(self, kind: str, value: dict) -> int | None:
        return self.engine.next_wake(value) if kind == BUCKETS else waybills.next_wake(value)

    def pack(self, kind: str, value: dict) -> bytes | None:
        """The table value to write; None when nothing is left (the key is deleted)."""
        empty = (not value["declarations"] and not value["held"]) if kind == BUCKETS else waybills.is_empty(value)
        return None if empty else self.wire.encode(TABLE_SCHEMA[kind], value)

    def keep(self, kind: str, key: str, value: dict, packed: bytes | None, partition: int, parcels_before: int) -> None:
        self.changed[(kind, key)] = (partition, packed, value)
        self.waiting[partition] = self.waiting.get(partition, 0) + self.parcels_in(kind, value) - parcels_before
        self.m.parcels_waiting.set(sum(n for p, n in self.waiting.items() if p in self.wakeups.partitions))

    # --- expiry --------------------------------------------------------------------------------

    async def tick(self) -> None:
        """The timer: a tick into every partition, so expiry runs in the stream on each."""
        stamp = str(now_ms()).encode()
        for partition in range(self.partitions):
            await self.worker.send(self.ticks_topic, b"tick", stamp, partition)

    async def on_tick(self, partition: int) -> None:
        now = now_ms()
        for kind, key in self.wakeups.due(partition, now):
            raw = self.stored(kind, key)
            if raw is None:
                continue
            try:
                value = self.wire.decode(raw)[1]
                before = self.parcels_in(kind, value)
                step = self.engine.expire(value, now) if kind == BUCKETS else self.engine.expire_waybill(value, now)
                await streaming.with_retry(lambda: number_outputs(self.numbers, step.outputs, now), log)
                encoded, packed = self.publisher.prepare(step.outputs), self.pack(kind, value)
            except Exception:  # noqa: BLE001 - a broken entry must not stop the others' expiry
                log.exception("expiry of %s %s failed", kind, key)
                continue
            await self.run(step, encoded)
            self.keep(kind, key, value, packed, partition, before)

    def rescan_if_reassigned(self) -> None:
        """Rebuild the expiry schedule and the parcel counts from the tables when the partitions
        owned changed or rows came from a changelog (a table rebuilt for a partition)."""
        assigned = self.worker.partitions
        now = (assigned, sum(t.recoveries for t in self.tables.values()))
        if now == self.scanned:
            return
        self.scanned = now
        self.wakeups.reset(assigned)
        self.waiting.clear()
        for kind, table in self.tables.items():
            for raw_key, raw in table.items():
                key = raw_key.decode()
                partition = self.owner(key)
                if partition in assigned:
                    value = self.wire.decode(raw)[1]
                    self.wakeups.push(partition, self.wake_of(kind, value) or 0, kind, key)
                    self.waiting[partition] = self.waiting.get(partition, 0) + self.parcels_in(kind, value)
        self.m.parcels_waiting.set(sum(self.waiting.values()))
