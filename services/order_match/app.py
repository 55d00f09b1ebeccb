"""order_match as a stream worker (``partition_worker``): the wiring around ``MatchProcessor``.

Flow: documents.{order,payment,logistics,inventory} (co-partitioned by orderNo) → one
bucket per orderNo in a changelog-backed table → verdicts, matched declarations, receipts,
dead letters. Expiry runs inside the stream too: a timer drops a tick into every partition
of ``order_match.ticks`` and the worker expires that partition's due declarations when the
tick arrives, so table writes always happen in stream context on the right partition.

Documents are taken in batches (what one fetch brings, up to SANDAN_STREAM_BATCH): each bucket
is read once per batch and written to the table once per commit (``bucket_store``), the
declarations completed in the batch are decided with one round trip to Redis, and the
outputs go to the producer without waiting on each. A batch that fails is taken again one
document at a time, so that a bad document is dead-lettered alone.

Delivery is at-least-once: the worker flushes the producer before it commits offsets, and every
effect is idempotent (a document seen twice is a no-op in the bucket; the quota is reserved
once per declaration id; verdicts carry the declaration id for consumers to de-duplicate).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from kafka.partitioner.default import murmur2

from services.common import config, metrics, redis_client, streaming, topics
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
from services.common.quota.store import RedisQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.stream_clock import StreamClock, monotonic_ms
from services.order_match.wakeup_store import WakeupStore
from services.order_match.waybills import RedisWaybillRegistry

log = logging.getLogger("sandan.order_match")
DOCUMENT_TOPICS = ("documents.order", "documents.payment", "documents.logistics", "documents.inventory")


TABLE = "match-buckets"


def create_worker() -> tuple[PartitionWorker, Callable[[list], Awaitable[None]]]:
    """The worker and its batch handler (``sandan worker order-match`` runs them)."""
    match = MatchWorker()
    return match.worker, match.handle


class MatchWorker:
    """One order_match process: its partition worker, table, stores and the steps of a batch."""

    def __init__(self) -> None:
        self.partitions = config.get_int("SANDAN_TOPIC_PARTITIONS")
        name = "order-match"
        folder = streaming.state_folder(name)
        table = ChangelogTable(changelog_topic(),
                               None if config.get("SANDAN_STORE").startswith("memory") else folder / TABLE,
                               memory_mb=config.get_int("SANDAN_ROCKSDB_MEMORY_MB"))
        self.ticks_topic = topics.name("order_match.ticks")
        document_topics = tuple(topics.name(t) for t in DOCUMENT_TOPICS)
        self.worker = PartitionWorker(name, [*document_topics, self.ticks_topic], tables=[table],
                                      aligned=document_topics)
        self.wire = codec()
        self.timeout_ms = config.get_int("SANDAN_MATCH_TIMEOUT") * 1000
        self.retention_ms = config.get_int("SANDAN_MATCH_RETENTION") * 1000
        self.replay_window_ms = config.get_int("SANDAN_MATCH_REPLAY_WINDOW") * 1000
        redis = redis_client.connect()
        # a batch's quota, waybill and number writes on the replicas before its verdicts go out
        self.replicated = redis_client.replica_wait(redis).after
        namespace = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}"
        self.processor = MatchProcessor(
            quota=RedisQuotaStore(redis, namespace), waybills=RedisWaybillRegistry(redis, namespace),
            settings=RuleSettings.from_env(), rates=load_rates(), timeout_ms=self.timeout_ms,
            replay_window_ms=self.replay_window_ms, numbers=RedisCustomsNumbers(redis, namespace))
        self.store = BucketStore(table, self.wire)
        self.worker.before_commit.append(self.store.flush)
        self.worker.on_lost.append(self.lost)
        self.wakeups = WakeupStore(folder / "wakeups")
        self.clock = StreamClock(document_topics, config.get_int("SANDAN_MATCH_IDLE_SECONDS") * 1000)
        # The broker's time of the newest record read (documents and ticks: LogAppendTime): the
        # stream clock runs on it, so a worker whose own clock is off expires nothing early or late.
        self.broker_ms = 0
        self.loaded_wake: dict[str, int | None] = {}  # each bucket's wake-up when read: where its index entry is
        self.scanned_for: set = set()
        # Buckets whose INCOMPLETE verdicts a tick caused, by that tick's position: if the tick
        # comes again after a crash, its verdicts are emitted again (see matcher's docstring).
        self.tick_decisions: dict[str, list[str]] = {}
        self.m = metrics.order_match()
        self.publisher = streaming.Publisher(self.worker.send, self.wire,
                                             count=lambda o: metrics.count_output(self.m, o))
        self.expected_schema = {topics.name(t): topics.BY_NAME[t].value for t in DOCUMENT_TOPICS}
        self.worker.timer(config.get_int("SANDAN_TICK_SECONDS"), self.tick)

    # --- a batch of records ------------------------------------------------------------------

    async def handle(self, records: list) -> None:
        # Documents first, then ticks: a tick comes after every document fetched with it (the
        # stream clock, not the order of topics, decides what may expire).
        await self.on_documents([r for r in records if r.topic != self.ticks_topic])
        for record in records:
            if record.topic == self.ticks_topic:
                await self.on_tick(record)

    async def on_documents(self, records) -> None:
        if not records:
            return
        now = now_ms()
        self.loaded_wake.clear()
        taken = [self.arrival_of(record, now) for record in records]
        arrivals = [a for a in taken if isinstance(a, Arrival)]
        dead = [a for a in taken if not isinstance(a, Arrival)]
        try:
            done = await streaming.with_retry(
                self.replicated(lambda: batch.run(self.processor, arrivals, self.load, now)), log)
            outputs = self.publisher.prepare(dead + done.outputs)  # encoded before the state is kept
        except Exception:  # noqa: BLE001 - find the document at fault: take them one by one
            log.exception("a batch of %d documents failed; taking them one at a time", len(arrivals))
            await self.publisher.publish(dead)
            for arrival in arrivals:
                await self.on_document(arrival)
            return
        self.keep(done)
        for kind, n in Counter(matcher.kind_of(a.doc) for a in arrivals).items():
            self.m.documents.labels(kind=kind, outcome="processed").inc(n)
        await self.publisher.send(outputs)

    async def on_document(self, arrival: Arrival) -> None:
        """One document alone (after its batch failed): a failure dead-letters it, not the partition."""
        kind = matcher.kind_of(arrival.doc)
        try:
            done = await streaming.with_retry(
                self.replicated(lambda: batch.run(self.processor, [arrival], self.load, now_ms())), log)
            outputs = self.publisher.prepare(done.outputs)
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the partition
            msg = arrival.source
            log.exception("document %s on %s failed", arrival.doc.get("guid"), arrival.position)
            self.m.documents.labels(kind=kind, outcome="failed").inc()
            await self.publisher.publish([dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                                                      "PROCESSING_ERROR", None, f"{type(exc).__name__}: {exc}",
                                                      arrival.doc.get("guid"))])
            return
        self.keep(done)
        self.m.documents.labels(kind=kind, outcome="processed").inc()
        await self.publisher.send(outputs)

    def arrival_of(self, msg, now: int) -> Arrival | Output:
        """The document of a record, or the dead letter of a record that holds none."""
        try:
            name, doc = self.wire.decode(msg.value)
            if name != self.expected_schema.get(msg.topic):
                # a well-formed record of another kind (a verdict, a receipt ...) on a document topic
                raise WireError(f"{msg.topic} carries {self.expected_schema.get(msg.topic)} records, not {name}")
            key = doc["orderNo"].strip()
        except (WireError, KeyError, AttributeError) as exc:
            self.m.documents.labels(kind="unknown", outcome="undecodable").inc()
            return dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "UNDECODABLE", None, str(exc))
        arrived = msg.timestamp if msg.timestamp and msg.timestamp > 0 else now
        self.broker_time(msg)
        self.clock.read(msg.topic, msg.partition, arrived, monotonic_ms())
        return Arrival(key, doc, msg.value, f"{msg.topic}:{msg.partition}:{msg.offset}", arrived, msg)

    # --- buckets and their wake-ups ----------------------------------------------------------

    def wake_of(self, bucket: dict) -> int | None:
        wake = matcher.next_deadline(bucket, self.timeout_ms, self.replay_window_ms)
        if wake is None and bucket["declarations"] and all(d["status"] in matcher.CLOSED
                                                          for d in bucket["declarations"]):
            wake = max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + self.retention_ms
        return wake

    def load(self, arrival: Arrival) -> dict:
        bucket = self.store.take(arrival.key) or matcher.new_bucket(arrival.key)
        self.loaded_wake[arrival.key] = self.wake_of(bucket)
        return bucket

    def save(self, key: str, bucket: dict, partition: int, indexed_wake: int | None = None) -> None:
        """Write the bucket (or forget an empty one); index its next wake-up if it moved."""
        if not bucket["declarations"] and not bucket["waybills"]:
            self.store.delete(partition, key)
            self.wakeups.move(partition, key, indexed_wake, None)
            return
        self.store.put(partition, key, bucket)
        self.wakeups.move(partition, key, indexed_wake, self.wake_of(bucket))

    def keep(self, done: batch.Batch) -> None:
        for key, (bucket, arrival) in done.buckets.items():
            self.save(key, bucket, arrival.source.partition, self.loaded_wake.pop(key, None))
        self.loaded_wake.clear()

    def lost(self) -> None:
        """The worker dropped its work since the last commit: buckets and wake-ups built from it go,
        and the wake-up index is rebuilt from the table at the first tick once assigned again."""
        self.store.drop()
        self.loaded_wake.clear()
        self.scanned_for.clear()
        self.tick_decisions.clear()

    # --- expiry --------------------------------------------------------------------------------

    async def tick(self) -> None:
        """The timer: a tick into every partition, so expiry runs in the stream on each."""
        stamp = str(now_ms()).encode()
        for partition in range(self.partitions):
            await self.worker.send(self.ticks_topic, b"tick", stamp, partition)

    async def on_tick(self, msg) -> None:
        partition, position = msg.partition, f"{msg.topic}:{msg.partition}:{msg.offset}"
        self.rescan_if_reassigned(self.worker.partitions)
        wall = now_ms()
        now = self.clock.now(partition, self.broker_time(msg), monotonic_ms())  # not past what has been read
        for key in self.tick_decisions.pop(position, []):
            bucket = self.store.take(key)
            if bucket is not None:
                replayed = await self.processor.replay(bucket, position, wall)
                await self.publisher.publish(await streaming.with_retry(
                    self.replicated(lambda: self.processor.number(replayed, wall)), log))
        expired: list[Output] = []
        for key in self.wakeups.due(partition, now):
            bucket = self.store.take(key)
            if bucket is None:
                continue
            expired += self.processor.expire(bucket, now, position=position)
            if matcher.late_complete(bucket, now):  # expire merged a declaration's documents: decide it
                expired += await streaming.with_retry(
                    self.replicated(lambda: self.processor.settle_late(bucket, now, wall, position)), log)
            closed = bucket["declarations"] and all(d["status"] in matcher.CLOSED for d in bucket["declarations"])
            if (closed and not bucket["waybills"]  # an unclaimed waybill is answered first (expired_waybills)
                    and max(d.get("decidedAt") or 0 for d in bucket["declarations"]) + self.retention_ms <= now):
                self.store.delete(partition, key)  # retention over: forget the order number
            else:
                self.save(key, bucket, partition)  # its wake-up was taken out of the index: index it again
        if expired:  # the numbers of all the tick's expired inventories in one round trip
            await self.publisher.publish(await streaming.with_retry(
                self.replicated(lambda: self.processor.number(expired, wall)), log))
        self.m.pending.set(len(self.wakeups))
        # how late the earliest scheduled wake-up is; stays ~0 unless expiry has stalled
        earliest = self.wakeups.earliest_ms()
        self.m.expiry_overdue.set(max(0, wall - (earliest if earliest is not None else wall)) / 1000)

    def broker_time(self, msg) -> int:
        """The broker's time as far as this worker has read, ``msg`` included."""
        if msg.timestamp and msg.timestamp > 0:
            self.broker_ms = max(self.broker_ms, msg.timestamp)
        return self.broker_ms

    def rescan_if_reassigned(self, assigned: frozenset) -> None:
        """Rebuild the wake-up index and the tick replay list from the table after a reassignment."""
        if assigned == frozenset(self.scanned_for):
            return
        self.wakeups.clear()
        self.clock.forget()
        self.tick_decisions.clear()  # rebuilt below for the partitions owned now
        self.scanned_for.clear()
        self.scanned_for.update(assigned)
        for key, bucket in self.store.items():
            partition = (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions  # the producers' default partitioner
            if partition in assigned:
                wake = self.wake_of(bucket)
                self.wakeups.add(partition, wake if wake is not None else 0, key)
                for decl in bucket["declarations"]:  # INCOMPLETE, or decided with a lone waybill
                    if (decl["status"] != matcher.OPEN
                            and (decl.get("decidedBy") or "").startswith(self.ticks_topic)):
                        self.tick_decisions.setdefault(decl["decidedBy"], []).append(key)


def changelog_topic() -> str:
    """The table's changelog topic (``<app id>-match-buckets-changelog``; existing state is kept under it)."""
    return f"{streaming.app_id('order-match')}-{TABLE}-changelog"
