"""Three Kafka nodes (`scripts/stack.sh up` with SANDAN_KAFKA_NODES=3): sandan's topics are
replicated 3 with min.insync.replicas 2, a broker killed with SIGKILL under acks=all load loses
nothing, and with two of three down producing stops instead of losing.

The cluster runs on ports of its own (23092, 23102, 23112, controllers +1, or the next free set
100 higher when another run holds them) with its data in a tmp folder: neither the shared stack
(19092) nor the fault suite's (29092) is touched. The ports lie below the kernel's ephemeral range
(32768 up): there, any outgoing connection of the suite may take a port between the check and the
broker's bind.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from services.common import changelogs, kafka_io, topics
from tests.local_ports import free_base, stack
from tests.faults.topic_configs import topic_configs

NODES = 3
BATCH = 400


def free_base_port() -> int:
    """The first of 23092, 23192, ... whose six ports (brokers and controllers) nobody holds."""
    return free_base(23092, [10 * i + c for i in range(NODES) for c in (0, 1)], "a three-node cluster")


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    # Not under pytest's tmp_path: other pytest sessions on the machine prune those folders.
    local = tempfile.mkdtemp(prefix="sandan-kafka-cluster-")
    port = free_base_port()  # chosen when the cluster starts, not when the module is collected
    env = {**os.environ, "SANDAN_KAFKA_NODES": str(NODES), "SANDAN_KAFKA_PORT": str(port),
           "SANDAN_KAFKA_CONTROLLER_PORT": str(port + 1), "SANDAN_LOCAL_DIR": str(local)}
    try:
        stack(env, "up", "kafka")
        yield env
    finally:
        try:
            stack(env, "down", "kafka")
        finally:
            shutil.rmtree(local, ignore_errors=True)


@pytest.fixture
def settings(cluster, monkeypatch) -> str:
    exported = dict(line.removeprefix("export ").split("=", 1) for line in stack(cluster, "env").splitlines())
    port = int(cluster["SANDAN_KAFKA_PORT"])
    bootstrap = ",".join(f"127.0.0.1:{port + 10 * i}" for i in range(NODES))
    assert exported == {"SANDAN_KAFKA_BOOTSTRAP": bootstrap, "SANDAN_TOPIC_REPLICATION": "3",
                        "SANDAN_TOPIC_MIN_INSYNC": "2"}
    prefix = f"cluster-{uuid.uuid4().hex[:8]}."
    for name, value in {**exported, "SANDAN_TOPIC_PREFIX": prefix, "SANDAN_SCHEMA_REGISTRY_URL": "",
                        "SANDAN_WIRE_FORMAT": "sandan"}.items():
        monkeypatch.setenv(name, value)
    return prefix


def node_pid(env: dict[str, str], node: int) -> int:
    return int((Path(env["SANDAN_LOCAL_DIR"]) / "kafka" / f"node-{node}" / "kafka.pid").read_text())


def kill_node(env: dict[str, str], node: int) -> None:
    pid = node_pid(env, node)
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text():
        time.sleep(0.05)


def send(producer, topic: str, numbers: range) -> None:
    """Each number as a record, acknowledged (acks=all) before this returns."""
    futures = [producer.send(topic, key=str(n).encode(), value=str(n).encode()) for n in numbers]
    for future in futures:
        future.get(timeout=120)


def partitions(admin: KafkaAdminClient, topic: str) -> list[dict]:
    [described] = admin.describe_topics([topic])
    return described["partitions"]


def test_three_nodes_replicate_and_survive_a_killed_broker(cluster, settings):
    created, _ = kafka_io.create_topics()
    assert sorted(created) == sorted(spec.full_name for spec in topics.TOPICS)
    changelog = f"{settings}worker-table-changelog"
    assert changelogs.declare_topics({changelog: 2}) == [changelog]

    admin = kafka_io.admin()
    try:
        names = [*created, changelog]
        described = topic_configs(admin, names)
        for name in names:
            assert described[name]["min.insync.replicas"]["value"] == "2", name
            for partition in partitions(admin, name):
                assert sorted(partition["replica_nodes"]) == [1, 2, 3], (name, partition)

        topic = topics.name("documents.order")
        producer = kafka_io.producer()
        assert producer.config["acks"] == -1 and producer.config["enable_idempotence"]
        try:
            send(producer, topic, range(0, BATCH))
            leader = partitions(admin, topic)[0]["leader_id"]
            kill_node(cluster, leader)
            # Keeps producing through the leader's death: retried to the new leaders, each acknowledged.
            send(producer, topic, range(BATCH, 2 * BATCH))
        finally:
            producer.close()
    finally:
        admin.close()

    # Nothing acknowledged is missing, nothing is there twice (idempotent producer).
    values = sorted(int(record.value) for record in kafka_io.read_all(topic, timeout_s=60))
    assert values == list(range(2 * BATCH))

    stack(cluster, "up", "kafka")  # starts only the killed node; waits until all three are unfenced
    admin = kafka_io.admin()
    try:
        deadline = time.monotonic() + 90
        while not all(len(p["isr_nodes"]) == 3 for p in partitions(admin, topic)):
            assert time.monotonic() < deadline, f"node {leader} never caught up: {partitions(admin, topic)}"
            time.sleep(0.5)
    finally:
        admin.close()
    producer = kafka_io.producer()
    try:
        send(producer, topic, range(2 * BATCH, 3 * BATCH))
    finally:
        producer.close()
    values = sorted(int(record.value) for record in kafka_io.read_all(topic, timeout_s=60))
    assert values == list(range(3 * BATCH))


def test_two_nodes_down_refuses_writes_and_loses_nothing(cluster, settings):
    kafka_io.create_topics([spec for spec in topics.TOPICS if spec.name == "documents.order"])
    topic = topics.name("documents.order")
    # One producer throughout: it has its producer id before the nodes go (an idempotent
    # producer cannot get one without a quorum), and gives a record up after 10 s.
    producer = kafka_io.producer(delivery_timeout_ms=10000, request_timeout_ms=5000)
    try:
        send(producer, topic, range(BATCH))
        admin = kafka_io.admin()
        try:
            survivor = partitions(admin, topic)[0]["leader_id"]
        finally:
            admin.close()
        for node in {1, 2, 3} - {survivor}:
            kill_node(cluster, node)
        # Partition 0's leader is alive, but one replica of three is below min.insync.replicas=2
        # (and the controller quorum is gone): the acks=all write is never acknowledged.
        with pytest.raises(KafkaError):
            producer.send(topic, key=b"refused", value=str(BATCH).encode(), partition=0).get(timeout=60)
    finally:
        producer.close(timeout=5)

    stack(cluster, "up", "kafka")
    values = sorted(int(record.value) for record in kafka_io.read_all(topic, timeout_s=60))
    # The refused record may or may not have reached a log; every acknowledged one is there once.
    assert values[:BATCH] == list(range(BATCH)) and set(values[BATCH:]) <= {BATCH}
