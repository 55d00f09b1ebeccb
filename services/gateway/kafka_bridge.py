"""The gateway's two ways to Kafka: a safe publisher and a resumable topic reader.

The publisher waits for every record to be acknowledged by all in-sync replicas (acks=all,
idempotent producer, ``AckedProducer``) before it returns, so the gateway answers "accepted"
only for what is on the log, and "unavailable" within SANDAN_KAFKA_PUBLISH_TIMEOUT otherwise.
The reader is a plain consumer with manual assignment and seeks (no consumer group: each
subscriber reads independently and its position lives in its cursor). It takes a small batch
at a time and the next one only after the caller has taken the last, so a slow subscriber
holds the gateway's buffer at one batch plus what the consumer fetches ahead
(``fetch_bytes``), never the whole topic.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.common import config, kafka_security, topics
from services.common.acked_producer import AckedProducer
from services.common.avro import codec
from services.common.outputs import Output
from services.gateway import cursor
from services.gateway.errors import UNAVAILABLE, CallError

POLL_MS = 500  # how often an idle stream looks up from Kafka (to notice a shutdown)


class KafkaPublisher:
    def __init__(self, bootstrap: str, max_request_bytes: int = 4 * 1024 * 1024,
                 deadline_s: float | None = None) -> None:
        def make() -> AIOKafkaProducer:
            return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=2, client_id="sandan-gateway", max_request_size=max_request_bytes,
                                    **kafka_security.aiokafka_kwargs())

        self.producer = AckedProducer(make, deadline_s or config.get_int("SANDAN_KAFKA_PUBLISH_TIMEOUT"), "gateway")
        self.wire = codec()

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()  # flushes what is still in flight

    async def publish(self, outputs: Sequence[Output]) -> None:
        """Every output on its topic, acknowledged, or UNAVAILABLE (then nothing may be assumed)."""
        encoded = [(topics.name(o.topic), o.key, self.wire.encode(o.schema, o.record)) for o in outputs]
        try:
            await self.producer.send_all(encoded)
        except KafkaError as exc:
            raise CallError(UNAVAILABLE, f"Kafka did not acknowledge the records ({type(exc).__name__}); "
                                         f"nothing of this request is acknowledged, send it again") from exc


@dataclass(frozen=True)
class LogRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    cursor: str  # resumes right after this record


@dataclass
class StreamStats:
    """What one server stream holds: taken from Kafka but not yet handed to gRPC."""
    method: str
    client: str
    taken: int = 0
    sent: int = 0

    @property
    def buffered(self) -> int:
        return self.taken - self.sent


ConsumerFactory = Callable[[str], AIOKafkaConsumer]  # client id -> a consumer not yet started


class TopicReader:
    def __init__(self, bootstrap: str, batch: int, fetch_bytes: int,
                 consumer_factory: ConsumerFactory | None = None) -> None:
        self.bootstrap, self.batch, self.fetch_bytes = bootstrap, batch, fetch_bytes
        self.consumer_factory = consumer_factory or self._consumer

    def _consumer(self, client_id: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id=client_id,
                                isolation_level="read_committed",  # never a fenced worker's aborted output
                                max_partition_fetch_bytes=self.fetch_bytes, fetch_max_bytes=self.fetch_bytes,
                                **kafka_security.aiokafka_kwargs())

    async def read(self, short_topic: str, positions: dict[int, int] | None, latest: bool, stop: asyncio.Event,
                   stats: StreamStats, on_lag: Callable[[int], None],
                   leave: Callable[[dict[int, int], bool], bool] | None = None) -> AsyncIterator[list[LogRecord]]:
        """Records of ``short_topic`` from ``positions`` (a cursor's) or the start, until ``stop``:
        a list per read from Kafka (never empty), in order within each partition. ``leave(positions,
        caught_up)`` is asked before every read from Kafka; True ends the records there (the caller
        goes on from those positions another way)."""
        consumer = self.consumer_factory("sandan-gateway-stream")
        try:
            await consumer.start()
            at = await self._seek(consumer, topics.name(short_topic), positions or {}, latest)
        except KafkaError as exc:
            await consumer.stop()
            raise CallError(UNAVAILABLE, f"Kafka did not answer ({type(exc).__name__}); try again") from exc
        except CallError:
            await consumer.stop()
            raise
        try:
            while not stop.is_set():
                if leave is not None and leave(dict(at), _lag(consumer, at, unknown=-1) == 0):
                    return
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=self.batch)
                on_lag(_lag(consumer, at))
                taken = []
                for tp, records in batch.items():
                    for record in records:
                        at[tp.partition] = record.offset + 1
                        taken.append(LogRecord(tp.partition, record.offset, record.key, record.value,
                                               cursor.encode(short_topic, at)))
                if taken:
                    stats.taken += len(taken)
                    yield taken
        finally:
            await consumer.stop()

    @staticmethod
    async def _seek(consumer: AIOKafkaConsumer, topic: str, positions: dict[int, int], latest: bool) -> dict[int, int]:
        # aiokafka learns a topic's partitions only for topics it was asked about; without a
        # subscription this is the call that asks.
        await consumer._client._wait_on_metadata(topic)
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            raise CallError(UNAVAILABLE, f"topic {topic} does not exist yet")
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        cursor.check_within(positions, {tp.partition: end for tp, end in ends.items()}, topic)
        edge = ends if latest else await consumer.beginning_offsets(parts)
        at = {tp.partition: positions.get(tp.partition, edge[tp]) for tp in parts}
        for tp in parts:
            consumer.seek(tp, at[tp.partition])
        return at


def _lag(consumer: AIOKafkaConsumer, at: dict[int, int], unknown: int = 0) -> int:
    """Records on Kafka past ``at``; ``unknown`` when a partition's end is not known yet (-1: say so)."""
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            if unknown < 0:
                return unknown
            continue
        total += max(0, high - at[tp.partition])
    return total
