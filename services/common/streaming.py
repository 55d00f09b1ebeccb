"""What the stream workers share: retries, the output ``Publisher`` (partition_worker's
workers), and the faust app settings of the returns worker, the one still on faust:

* At-least-once: acks=all, offsets committed every second (by the timer only, never inline in
  the fetch loop) after faust flushes the producer.
* Static group membership: a worker restarted after a crash takes its old place in the
  group at once, without a rebalance (faust loses or skips partitions on some rebalances).
* A short session timeout, so a dead worker's partitions move on in seconds, not a minute.
* Table files under a folder of the worker's own identity: two workers of one app on a host
  (SANDAN_WORKER_INDEX 0 and 1) never open the same RocksDB files, and a restarted worker
  finds its own again.
* The producer lingers a few milliseconds and batches up to SANDAN_KAFKA_BATCH_BYTES: on this
  kind of machine a produce request costs far more than the records in it.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import faust
import faust.streams
from kafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from services.common import config, topics
from services.common.avro import AvroCodec
from services.common.outputs import Output

TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, asyncio.TimeoutError, KafkaError)


# faust commits inline, in its fetch loop, every ``broker_commit_every`` records, and a commit
# waits for the producer's flush: at 1,000 records that stopped fetching about half of the time
# and left a worker with a standing ~0.7 s queue at 450 declarations/s with CPU to spare
# (bench/RESULTS.md). Offsets are committed by faust's timer every second instead.
COMMIT_EVERY = 2**31 - 1


def app_id(name: str) -> str:
    return config.get("SANDAN_TOPIC_PREFIX") + f"sandan-{name}"


def worker_instance_id(app: str) -> str:
    return config.get("SANDAN_WORKER_ID") or f"{socket.gethostname()}-{app}-{config.get('SANDAN_WORKER_INDEX')}"


def _bound_fetch_wait() -> None:
    """faust's aiokafka driver asks every fetch to wait up to 1.5 s (hard-coded). aiokafka leaves
    partitions that still have records buffered out of the next fetch, so their new records wait
    for that long poll to come back: a worker settled into a standing ~0.75 s delay (half the
    wait) at 450 declarations/s with CPU to spare (bench/RESULTS.md). The consumer is given
    SANDAN_FETCH_MAX_WAIT_MS instead, before it starts."""
    from faust.transport.drivers import aiokafka as driver

    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "sandan_bounded", False):
        return

    def create_worker_consumer(self, transport):
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = config.get_int("SANDAN_FETCH_MAX_WAIT_MS")  # read by its fetcher at start
        return consumer

    create_worker_consumer.sandan_bounded = True
    driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer


def new_app(name: str, *, store: str = "memory://", **overrides) -> faust.App:
    """A faust app named ``sandan-<name>`` (with the topic prefix) configured for sandan."""
    _bound_fetch_wait()
    ident = app_id(name)
    instance = worker_instance_id(ident)
    datadir = Path(config.get("SANDAN_LOCAL_DIR")) / "faust" / instance
    datadir.mkdir(parents=True, exist_ok=True)
    settings = dict(
        broker=f"kafka://{config.get('SANDAN_KAFKA_BOOTSTRAP')}", store=store, datadir=str(datadir),
        topic_partitions=config.get_int("SANDAN_TOPIC_PARTITIONS"), topic_replication_factor=1,
        key_serializer="raw", value_serializer="raw", web_enabled=False, consumer_auto_offset_reset="earliest",
        table_standby_replicas=0, producer_acks=-1, broker_commit_every=COMMIT_EVERY, broker_commit_interval=1.0,
        broker_session_timeout=config.get_int("SANDAN_SESSION_TIMEOUT"), broker_heartbeat_interval=2.0,
        consumer_group_instance_id=instance,
        producer_linger=config.get_int("SANDAN_KAFKA_LINGER_MS") / 1000,
        producer_max_batch_size=config.get_int("SANDAN_KAFKA_BATCH_BYTES"),
        producer_max_request_size=max(config.get_int("SANDAN_KAFKA_BATCH_BYTES") * 4, 1_000_000),
    )
    settings.update(overrides)
    return faust.App(ident, **settings)


def state_folder(name: str) -> Path:
    """Where a worker of service ``name`` keeps its local state: a folder of its own identity,
    so two workers on one host never share files and a restarted one finds its own again."""
    folder = Path(config.get("SANDAN_LOCAL_DIR")) / "state" / worker_instance_id(app_id(name))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def rocksdb_options() -> dict:
    """RocksDB sizes for one table partition from SANDAN_ROCKSDB_MEMORY_MB (faust's defaults,
    a 2 GiB block cache and three 64 MiB write buffers per partition, are for big servers):
    half for the block cache, half for two write buffers. Data beyond that stays on disk."""
    budget = config.get_int("SANDAN_ROCKSDB_MEMORY_MB") * 1024 * 1024
    return {"block_cache_size": budget // 2, "write_buffer_size": budget // 4, "max_write_buffer_number": 2}


def output_topics(app: faust.App) -> dict:
    """Every declared topic as a faust topic, by short name."""
    return {t.name: app.topic(t.full_name, key_type=bytes, value_type=bytes) for t in topics.TOPICS}


class Publisher:
    """Encodes outputs and hands them straight to a Kafka producer.

    The worker flushes that producer before it commits the input offsets, so delivery stays
    at-least-once. A record that appears in several outputs (a verdict on two topics) is
    encoded once, and ``encoded`` can name records whose bytes are already at hand (an input
    passed on as is). ``send(topic, key, value)`` hands one record over and returns its
    delivery future; the sender looks after deliveries (partition_worker checks them all after
    each flush, before the commit).
    """

    def __init__(self, send: Callable[[str, bytes | None, bytes], Awaitable[asyncio.Future]], wire: AvroCodec,
                 count: Callable[[Output], None] | None = None) -> None:
        self._send, self.wire, self.count = send, wire, count
        self.names = {t.name: t.full_name for t in topics.TOPICS}

    def prepare(self, outputs: Iterable[Output], *, encoded: dict[int, bytes] | None = None
                ) -> list[tuple[Output, bytes]]:
        """Every output with its wire bytes; raises WireError before anything is sent, so a
        caller that encodes before it keeps its state never keeps a state whose outputs
        cannot go out."""
        done: dict[int, bytes] = dict(encoded or {})
        prepared = []
        for o in outputs:
            value = done.get(id(o.record))
            if value is None:
                value = done[id(o.record)] = self.wire.encode(o.schema, o.record)
            prepared.append((o, value))
        return prepared

    async def send(self, prepared: Iterable[tuple[Output, bytes]], *, count: bool = True) -> None:
        send = self._send
        for o, value in prepared:
            await send(self.names[o.topic], o.key, value)
            if count and self.count is not None:
                self.count(o)

    async def publish(self, outputs: Iterable[Output], *, count: bool = True,
                      encoded: dict[int, bytes] | None = None) -> None:
        await self.send(self.prepare(outputs, encoded=encoded), count=count)


def in_event(event) -> None:
    """Let this task read and write tables as if it were iterating ``event``.

    faust finds the partition of a table read or write in the current event, a context
    variable its stream iteration sets; a task that takes events in batches
    (``stream.take_events``) sets it itself, for each event in turn.
    """
    faust.streams._current_event.set(weakref.ref(event))


_LAG = None


def lag_gauge():
    """``sandan_consumer_lag{topic,partition}``: messages on the broker a worker has not consumed
    yet, for the partitions it owns (alerts fire when it keeps growing)."""
    global _LAG
    if _LAG is None:
        from prometheus_client import Gauge
        _LAG = Gauge("sandan_consumer_lag", "Messages behind the end of each owned input partition",
                     ["topic", "partition"])
    return _LAG


def watch_consumer_lag(app: faust.App, interval_s: float = 5.0) -> None:
    """Export ``lag_gauge`` for a faust worker's input partitions."""
    gauge = lag_gauge()
    known: set = set()

    @app.timer(interval=interval_s)
    async def measure_lag() -> None:
        owned = {tp for tp in app.consumer.assignment() if not tp.topic.endswith("-changelog")}
        for tp in known - owned:
            gauge.remove(tp.topic, str(tp.partition))
        known.clear()
        for tp in owned:
            position = await app.consumer.position(tp)
            if position is not None:
                gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, app.consumer.highwater(tp) - position))
                known.add(tp)


async def with_retry(step, log: logging.Logger):
    """Redis or Kafka away: wait and try again; good input is never dead-lettered for it."""
    delay = 0.2
    while True:
        try:
            return await step()
        except TRANSIENT as exc:
            log.warning("transient failure, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
