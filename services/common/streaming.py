"""What every sandan faust worker shares: the app's settings, retries, output topics.

* At-least-once: acks=all, offsets committed every second after faust flushes the producer.
* Static group membership: a worker restarted after a crash takes its old place in the
  group at once, without a rebalance (faust loses or skips partitions on some rebalances).
* A short session timeout, so a dead worker's partitions move on in seconds, not a minute.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import faust
from kafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from services.common import config, topics

TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, asyncio.TimeoutError, KafkaError)


def app_id(name: str) -> str:
    return config.get("SANDAN_TOPIC_PREFIX") + f"sandan-{name}"


def worker_instance_id(app: str) -> str:
    return config.get("SANDAN_WORKER_ID") or f"{socket.gethostname()}-{app}-{config.get('SANDAN_WORKER_INDEX')}"


def new_app(name: str, *, store: str = "memory://", **overrides) -> faust.App:
    """A faust app named ``sandan-<name>`` (with the topic prefix) configured for sandan."""
    ident = app_id(name)
    datadir = Path(config.get("SANDAN_LOCAL_DIR")) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    settings = dict(
        broker=f"kafka://{config.get('SANDAN_KAFKA_BOOTSTRAP')}", store=store, datadir=str(datadir),
        topic_partitions=config.get_int("SANDAN_TOPIC_PARTITIONS"), topic_replication_factor=1,
        key_serializer="raw", value_serializer="raw", web_enabled=False, consumer_auto_offset_reset="earliest",
        table_standby_replicas=0, producer_acks=-1, broker_commit_every=1000, broker_commit_interval=1.0,
        broker_session_timeout=config.get_int("SANDAN_SESSION_TIMEOUT"), broker_heartbeat_interval=2.0,
        consumer_group_instance_id=worker_instance_id(ident),
    )
    settings.update(overrides)
    return faust.App(ident, **settings)


def output_topics(app: faust.App) -> dict:
    """Every declared topic as a faust topic, by short name."""
    return {t.name: app.topic(t.full_name, key_type=bytes, value_type=bytes) for t in topics.TOPICS}


_LAG = None


def watch_consumer_lag(app: faust.App, interval_s: float = 5.0) -> None:
    """Export ``sandan_consumer_lag{topic,partition}``: messages on the broker this worker has
    not consumed yet, for the partitions it owns (alerts fire when it keeps growing)."""
    global _LAG
    if _LAG is None:
        from prometheus_client import Gauge
        _LAG = Gauge("sandan_consumer_lag", "Messages behind the end of each owned input partition",
                     ["topic", "partition"])
    gauge = _LAG
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
