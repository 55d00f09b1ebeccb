"""Thin kafka-python adapters: topic administration, a safe producer, a reader for tools.

The stream workers use aiokafka; these synchronous helpers serve the command line,
the tests and the demo. The producer is configured so that an acknowledged record is on
the log of every in-sync replica (at least SANDAN_TOPIC_MIN_INSYNC of them): acks=all,
idempotence on, retries. Every client here takes the Kafka security settings
(``kafka_security``); one that security kept from the brokers raises KafkaSecurityError saying why.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from typing import Iterable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.common import avro, config, kafka_security, topics
from services.common.schema_registry import RegistryUnavailable

log = logging.getLogger(__name__)


def bootstrap() -> str:
    return config.get("SANDAN_KAFKA_BOOTSTRAP")


def _bootstrap_ms() -> int:
    return config.get_int("SANDAN_KAFKA_CONNECT_TIMEOUT") * 1000


class KafkaSecurityError(KafkaError):
    """The brokers refused this client's TLS or SASL login; the message names the setting."""

    def __str__(self) -> str:
        return str(self.args[0])


def client(cls, *args, **kwargs):
    """A kafka-python client (KafkaAdminClient, KafkaProducer, KafkaConsumer) on the bootstrap
    servers with the security settings; a bootstrap that TLS or SASL refused raises
    KafkaSecurityError with the reason (the client itself only says it could not bootstrap)."""
    security = kafka_security.kafka_python_kwargs()
    try:
        # a refused login is retried and logged until the bootstrap times out; the one line below says it
        with quiet("kafka") if security else nullcontext():
            return cls(*args, **{"bootstrap_servers": bootstrap(), **kwargs}, **security)
    except KafkaError as exc:
        reason = kafka_security.explain(kwargs.get("bootstrap_servers", bootstrap()))
        if reason is None:
            raise
        raise KafkaSecurityError(reason) from exc


class quiet:
    """A logger and its children silent but for CRITICAL, for the time of a ``with``."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc) -> None:
        self.logger.setLevel(self.level)


def consumer(*topic_names: str, **kwargs) -> KafkaConsumer:
    """Reads what is committed: records of a transaction a fenced worker left are never seen."""
    kwargs.setdefault("isolation_level", "read_committed")
    return client(KafkaConsumer, *topic_names, **kwargs)


def admin() -> KafkaAdminClient:
    return client(KafkaAdminClient, client_id="sandan-admin", request_timeout_ms=30000,
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
    settings = dict(acks="all", enable_idempotence=True, retries=10,
                    linger_ms=5, batch_size=256 * 1024, compression_type=None, client_id="sandan-cli",
                    bootstrap_timeout_ms=_bootstrap_ms())
    settings.update(overrides)
    return client(KafkaProducer, **settings)


def read_all(topic: str, *, timeout_s: float = 10.0, idle_s: float = 1.0) -> list:
    """Every record currently on a topic (from the beginning), for tools and tests.

    Stops when the end offsets seen at the start are reached, or after ``timeout_s``.
    """
    reader = consumer(enable_auto_commit=False, group_id=None, consumer_timeout_ms=int(idle_s * 1000))
    try:
        parts = [TopicPartition(topic, p) for p in (reader.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        reader.assign(parts)
        reader.seek_to_beginning(*parts)
        end = reader.end_offsets(parts)
        records = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(reader.position(p) < end[p] for p in parts):
            for batch in reader.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        reader.close()


def end_offsets(topic: str) -> dict[int, int]:
    reader = consumer(group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in (reader.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in reader.end_offsets(parts).items()}
    finally:
        reader.close()


def follow(topic: str, *, group: str | None = None, from_beginning: bool = True) -> Iterator:
    reader = consumer(topic, group_id=group, enable_auto_commit=bool(group),
                      auto_offset_reset="earliest" if from_beginning else "latest")
    try:
        yield from reader
    finally:
        reader.close()




class TopicTail:
    """Reads a topic from the beginning, then whatever arrives: ``poll()`` returns new records."""

    def __init__(self, topic: str) -> None:
        self.consumer = consumer(enable_auto_commit=False, group_id=None)
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
