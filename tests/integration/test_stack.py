"""The local stack is real and configured as the services assume (scripts/stack.sh up)."""
from __future__ import annotations

import time

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

pytestmark = pytest.mark.integration

RECORDS = 10


@pytest.fixture
def admin(stack):
    client = KafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="sandan-test-stack")
    yield client
    client.close()


def test_kafka_round_trip_with_acks_all(stack, topic_prefix, admin):
    topic = f"{topic_prefix}stack-smoke"
    admin.create_topics(
        {topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
    )
    try:
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=0)
        try:
            sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(RECORDS)]
            futures = [producer.send(topic, key=k, value=v) for k, v in sent]
            offsets = [f.get(timeout=15).offset for f in futures]
        finally:
            producer.close()
        assert offsets == list(range(RECORDS))

        # Assigned, not subscribed: no consumer group, so no rebalance to wait for.
        consumer = KafkaConsumer(
            bootstrap_servers=stack.bootstrap, enable_auto_commit=False, group_id=None
        )
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            received = []
            deadline = time.monotonic() + 15
            while len(received) < RECORDS and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    received.extend((r.key, r.value) for r in batch)
        finally:
            consumer.close()
        assert received == sent
    finally:
        admin.delete_topics([topic])


def test_kafka_refuses_to_auto_create_topics(stack, admin):
    # sandan declares every topic itself; an auto-created one would hide a misspelt name.
    broker_id = str(admin.describe_cluster()["controller_id"])
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, broker_id, configs={"auto.create.topics.enable": None})],
        config_filter="all",
    )
    assert configs["broker"][broker_id]["auto.create.topics.enable"]["value"] == "false"


def test_redis_set_get_and_append_only_file(stack, topic_prefix):
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    key = f"{topic_prefix}stack-smoke"
    try:
        assert client.set(key, "公斤", ex=60)
        assert client.get(key) == "公斤"
        # Guarantee balances must survive a restart, which only the AOF guarantees.
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.delete(key)
        client.close()
