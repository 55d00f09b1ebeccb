"""Thin kafka-python adapters: topic administration, a safe producer, a reader for tools.

The stream workers use aiokafka; these synchronous helpers serve the command line,
the tests and the demo. The producer is configured so that an acknowledged record is on
the log of every in-sync replica (at least SANDAN_TOPIC_MIN_INSYNC of them): acks=all,
idempotence on, retries.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.common import avro, config, topics
from services.common.schema_registry import RegistryUnavailable

log = logging.getLogger(__name__)


def bootstrap() -> str:
    return config.get("SANDAN_KAFKA_BOOTSTRAP")


def _bootstrap_ms() -> int:
    return config.get_int("SANDAN_KAFKA_CONNECT_TIMEOUT") * 1000


def admin() -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap(), client_id="sandan-admin", request_timeout_ms=30000,
                            bootstrap_timeout_ms=_bootstrap_ms())


def replication() -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for every topic sandan creates, from the settings."""
    factor = config.get_int("SANDAN_TOPIC_REPLICATION")
    min_insync = config.get_int("SANDAN_TOPIC_MIN_INSYNC")
    if factor < 1:
        raise SystemExit(f"setting SANDAN_TOPIC_REPLICATION={factor} must be at least 1")
    if not 1 <= min_insync <= factor:
        # More would refuse every acks=all write even with all replicas in sync.
        raise SystemExit(f"setting SANDAN_TOPIC_MIN_INSYNC={min_insync} must be between 1 and "
                         f"SANDAN_TOPIC_REPLICATION={factor}")
    return factor, min_insync


def new_topic(name: str, partitions: int, configs: dict[str, str]) -> NewTopic:
    """A topic as sandan creates every one: replicated and with min.insync.replicas from the settings."""
    factor, min_insync = replication()
    return NewTopic(name, partitions, factor, topic_configs={**configs, "min.insync.replicas": str(min_insync)})


def create_topics(specs: Iterable[topics.TopicSpec] = topics.TOPICS) -> tuple[list[str], list[str]]:
    """Create every declared topic that does not exist yet. Returns (created, existing)."""
    replication()  # a bad setting ends here, before anything is created
    client = admin()
    try:
        existing = set(client.list_topics())
        wanted = [s for s in specs if s.full_name not in existing]
        created: list[str] = []
        for spec in wanted:
            try:
                client.create_topics([new_topic(spec.full_name, topics.partitions_of(spec), spec.configs())])
                created.append(spec.full_name)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: same outcome
        register_schemas(specs)
        return created, sorted(existing & {s.full_name for s in specs})
    finally:
        client.close()


def register_schemas(specs: Iterable[topics.TopicSpec] = topics.TOPICS) -> list[tuple[str, int]]:
    """In the Confluent wire format: each topic's value schema under ``<topic>-value`` (BACKWARD,
    superseded versions first), so outside readers resolve every id. Returns (subject, id) pairs.

    A registry that does not answer ends the start-up with one line naming it (SystemExit):
    writing in this format without it is impossible.
    """
    wire = avro.codec()
    if wire.wire_format != "confluent":
        return []
    done = []
    try:
        for spec in specs:
            if spec.value in wire.names():
                subject = f"{spec.full_name}-value"
                done.append((subject, wire.register(spec.value, [subject])))
    except RegistryUnavailable as exc:
        raise SystemExit(f"sandan: {exc} (start it with `make up`, or unset SANDAN_SCHEMA_REGISTRY_URL)") from None
    except avro.WireError as exc:
        raise SystemExit(f"sandan: the schema registry refused a schema: {exc}") from None
    return done


def producer(**overrides) -> KafkaProducer:
    settings = dict(bootstrap_servers=bootstrap(), acks="all", enable_idempotence=True, retries=10,
                    linger_ms=5, batch_size=256 * 1024, compression_type=None, client_id="sandan-cli",
                    bootstrap_timeout_ms=_bootstrap_ms())
    settings.update(overrides)
    return KafkaProducer(**settings)


def read_all(topic: str, *, timeout_s: float = 10.0, idle_s: float = 1.0) -> list:
    """Every record currently on a topic (from the beginning), for tools and tests.

    Stops when the end offsets seen at the start are reached, or after ``timeout_s``.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=int(idle_s * 1000))
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(p) < end[p] for p in parts):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def end_offsets(topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap(), group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def follow(topic: str, *, group: str | None = None, from_beginning: bool = True) -> Iterator:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap(), group_id=group, enable_auto_commit=bool(group),
                             auto_offset_reset="earliest" if from_beginning else "latest")
    try:
        yield from consumer
    finally:
        consumer.close()




class TopicTail:
    """Reads a topic from the beginning, then whatever arrives: ``poll()`` returns new records."""

    def __init__(self, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False, group_id=None)
        parts = [TopicPartition(topic, p) for p in (self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)

    def poll(self, timeout_ms: int = 500) -> list:
        records = []
        for batch in self.consumer.poll(timeout_ms=timeout_ms, max_records=5000).values():
            records.extend(batch)
        return records

    def close(self) -> None:
        self.consumer.close()
