"""Replication of sandan's topics comes from the settings, and the local stack's Kafka nodes
(scripts/stack.sh with SANDAN_KAFKA_NODES) are rendered as documented. No broker needed: the
admin client is replaced, and `stack.sh config` / `env` only write and print."""
from __future__ import annotations

import os
import subprocess

import pytest

from services.common import changelogs, config, kafka_io, topics

STACK_SH = config.PROJECT_ROOT / "scripts" / "stack.sh"


class FakeAdmin:
    def __init__(self) -> None:
        self.created = []

    def list_topics(self):
        return []

    def create_topics(self, new_topics):
        self.created.extend(new_topics)

    def describe_topics(self, names):
        by_name = {t.name: t for t in self.created}
        return [{"name": name, "error_code": 0,
                 "partitions": [{"error_code": 0, "leader_id": 1}] * by_name[name].num_partitions} for name in names]

    def close(self):
        pass


@pytest.fixture
def fake_admin(monkeypatch) -> FakeAdmin:
    fake = FakeAdmin()
    monkeypatch.setattr(kafka_io, "admin", lambda: fake)
    monkeypatch.setattr(kafka_io, "register_schemas", lambda specs: [])
    return fake


def test_declared_topics_default_to_one_replica_and_min_insync_one(fake_admin, monkeypatch):
    monkeypatch.delenv("SANDAN_TOPIC_REPLICATION", raising=False)
    monkeypatch.delenv("SANDAN_TOPIC_MIN_INSYNC", raising=False)
    kafka_io.create_topics()
    assert len(fake_admin.created) == len(topics.TOPICS)
    for topic in fake_admin.created:
        assert topic.replication_factor == 1
        assert topic.topic_configs["min.insync.replicas"] == "1"


def test_declared_topics_take_replication_and_min_insync_from_the_settings(fake_admin, monkeypatch):
    monkeypatch.setenv("SANDAN_TOPIC_REPLICATION", "3")
    monkeypatch.setenv("SANDAN_TOPIC_MIN_INSYNC", "2")
    kafka_io.create_topics()
    specs = {spec.full_name: spec for spec in topics.TOPICS}
    for topic in fake_admin.created:
        assert topic.replication_factor == 3
        # the topic's own configs stay as declared, min.insync.replicas is added
        assert topic.topic_configs == {**specs[topic.name].configs(), "min.insync.replicas": "2"}


def test_changelog_topics_take_replication_and_min_insync_from_the_settings(fake_admin, monkeypatch):
    monkeypatch.setenv("SANDAN_TOPIC_REPLICATION", "3")
    monkeypatch.setenv("SANDAN_TOPIC_MIN_INSYNC", "2")
    assert changelogs.declare_topics({"app-table-changelog": 4}) == ["app-table-changelog"]
    [topic] = fake_admin.created
    assert (topic.num_partitions, topic.replication_factor) == (4, 3)
    assert topic.topic_configs == {"cleanup.policy": "compact", "min.insync.replicas": "2"}


@pytest.mark.parametrize("replication, min_insync, named", [
    ("3", "4", "SANDAN_TOPIC_MIN_INSYNC=4"),
    ("3", "0", "SANDAN_TOPIC_MIN_INSYNC=0"),
    ("0", "1", "SANDAN_TOPIC_REPLICATION=0"),
    ("three", "2", "SANDAN_TOPIC_REPLICATION='three'"),
])
def test_impossible_replication_settings_stop_before_any_topic_is_created(fake_admin, monkeypatch,
                                                                          replication, min_insync, named):
    monkeypatch.setenv("SANDAN_TOPIC_REPLICATION", replication)
    monkeypatch.setenv("SANDAN_TOPIC_MIN_INSYNC", min_insync)
    for create in (kafka_io.create_topics, lambda: changelogs.declare_topics({"app-table-changelog": 1})):
        with pytest.raises(SystemExit) as stopped:
            create()
        assert named in str(stopped.value)
    assert fake_admin.created == []


def stack_sh(tmp_path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDAN_")}
    env.update(SANDAN_LOCAL_DIR=str(tmp_path), **settings)
    return subprocess.run([str(STACK_SH), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def properties(path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_one_node_is_rendered_as_a_single_voter_with_replication_one(tmp_path):
    done = stack_sh(tmp_path, "config", "kafka")
    assert done.returncode == 0, done.stderr
    conf = properties(tmp_path / "kafka" / "server.properties")
    assert not (tmp_path / "kafka" / "node-1").exists()
    assert conf["node.id"] == "1"
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert conf["log.dirs"] == str(tmp_path / "kafka" / "data")
    for name in ("default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
                 "transaction.state.log.replication.factor", "transaction.state.log.min.isr"):
        assert conf[name] == "1", name
    assert "@" not in "".join(v for k, v in conf.items() if k != "controller.quorum.voters")
    env = stack_sh(tmp_path, "env").stdout.split()
    assert env == ["export", "SANDAN_KAFKA_BOOTSTRAP=127.0.0.1:19092", "export", "SANDAN_TOPIC_REPLICATION=1",
                   "export", "SANDAN_TOPIC_MIN_INSYNC=1"]


def test_three_nodes_are_a_quorum_of_three_with_ports_ten_apart_and_replication_three(tmp_path):
    settings = dict(SANDAN_KAFKA_NODES="3", SANDAN_KAFKA_PORT="39092", SANDAN_KAFKA_CONTROLLER_PORT="39093")
    done = stack_sh(tmp_path, "config", "kafka", **settings)
    assert done.returncode == 0, done.stderr
    voters = "1@127.0.0.1:39093,2@127.0.0.1:39103,3@127.0.0.1:39113"
    for node, port in ((1, 39092), (2, 39102), (3, 39112)):
        conf = properties(tmp_path / "kafka" / f"node-{node}" / "server.properties")
        assert conf["node.id"] == str(node)
        assert conf["process.roles"] == "broker,controller"
        assert conf["controller.quorum.voters"] == voters
        assert conf["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
        assert conf["log.dirs"] == str(tmp_path / "kafka" / f"node-{node}" / "data")
        for name in ("default.replication.factor", "offsets.topic.replication.factor",
                     "transaction.state.log.replication.factor", "share.coordinator.state.topic.replication.factor"):
            assert conf[name] == "3", name
        for name in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
            assert conf[name] == "2", name
    env = stack_sh(tmp_path, "env", **settings).stdout.split()
    assert env == ["export", "SANDAN_KAFKA_BOOTSTRAP=127.0.0.1:39092,127.0.0.1:39102,127.0.0.1:39112",
                   "export", "SANDAN_TOPIC_REPLICATION=3", "export", "SANDAN_TOPIC_MIN_INSYNC=2"]


def test_other_node_counts_are_refused_by_name(tmp_path):
    done = stack_sh(tmp_path, "config", "kafka", SANDAN_KAFKA_NODES="2")
    assert done.returncode != 0
    assert "SANDAN_KAFKA_NODES='2' must be 1 or 3" in done.stderr
    assert not (tmp_path / "kafka").exists()


def test_every_producer_waits_for_all_in_sync_replicas_and_is_idempotent():
    """min.insync.replicas only protects writes sent with acks=all; idempotence keeps the
    retries after a leader's death from writing a record twice."""
    import asyncio

    from services.common.partition_worker import PartitionWorker
    from services.gateway.kafka_bridge import KafkaPublisher

    async def made() -> list:
        worker = PartitionWorker("replication-check", ["in"])
        producers = [worker._producer(), KafkaPublisher("127.0.0.1:1").producer.make()]
        try:
            return [(p._sender._acks, p._txn_manager is not None) for p in producers]
        finally:
            for producer in producers:
                await producer.stop()

    assert asyncio.run(made()) == [(-1, True), (-1, True)]
