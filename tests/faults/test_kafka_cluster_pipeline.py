"""The broker scenario of test_stack.py on three Kafka nodes: the whole pipeline (gateway,
order_match, tax_guarantee, returns, as pipeline.py runs them) under load on a cluster of its
own (SANDAN_KAFKA_NODES=3) and a Redis of its own, the node leading the most of the pipeline's
partitions killed with SIGKILL and brought back, and later the active KRaft controller (the
quorum's leader: every node is broker and controller) stopped and started again. The audit of every scenario must find nothing
lost and nothing duplicated; every topic of the run (sandan's, the workers' changelogs, the
brokers' offsets and transactions) is replicated 3 with min.insync.replicas 2, and every
producer sandan builds sends with acks=all and idempotence.

Like test_kafka_cluster.py, the cluster listens below the kernel's ephemeral range (23092 up,
Redis on the base port + 40) with its data in a tmp folder; the fault suite's private stack is
not started. The services' logs stay in .local/faults/runs/ for the security scans.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from services.common import config, kafka_io
from services.common.partition_worker import PartitionWorker
from services.gateway.kafka_bridge import KafkaPublisher
from tests.faults import private_stack, scenario
from tests.faults.pipeline import Pipeline
from tests.faults.test_kafka_cluster import NODES, kill_node
from tests.faults.topic_configs import topic_configs
from tests.local_ports import free_base, stack

REDIS_OFFSET = 40  # Redis's port: the cluster's base port + this
INTERNAL = ("__consumer_offsets", "__transaction_state")


def free_ports() -> int:
    """The first base of 23092, 23192, ... whose six Kafka ports and Redis port nobody holds."""
    return free_base(23092, [10 * i + c for i in range(NODES) for c in (0, 1)] + [REDIS_OFFSET],
                     "a three-node cluster and Redis")


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    """Three Kafka nodes and a Redis, started for the module, stopped and deleted after it."""
    local = tempfile.mkdtemp(prefix="sandan-kafka-cluster-pipeline-")
    base = free_ports()
    env = {**os.environ, "SANDAN_KAFKA_NODES": str(NODES), "SANDAN_KAFKA_PORT": str(base),
           "SANDAN_KAFKA_CONTROLLER_PORT": str(base + 1), "SANDAN_REDIS_PORT": str(base + REDIS_OFFSET),
           "SANDAN_LOCAL_DIR": local}
    try:
        stack(env, "up", "kafka", "redis")
        yield env
    finally:
        try:
            stack(env, "down", "kafka", "redis")
        finally:
            shutil.rmtree(local, ignore_errors=True)


@pytest.fixture
def on_cluster(cluster, monkeypatch) -> dict[str, str]:
    """This process and every service it starts (pipeline.service_env copies the environment)
    use the cluster and its Redis."""
    exported = dict(line.removeprefix("export ").split("=", 1) for line in stack(cluster, "env").splitlines())
    assert exported["SANDAN_TOPIC_REPLICATION"] == "3" and exported["SANDAN_TOPIC_MIN_INSYNC"] == "2", exported
    settings = {**exported, "SANDAN_REDIS_URL": f"redis://127.0.0.1:{cluster['SANDAN_REDIS_PORT']}/0"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


def leaders(topics: list[str]) -> dict[int, int]:
    """Node -> how many partitions of ``topics`` it leads."""
    admin = kafka_io.admin()
    try:
        counts: dict[int, int] = {}
        for topic in admin.describe_topics(topics):
            for p in topic["partitions"]:
                counts[p["leader_id"]] = counts.get(p["leader_id"], 0) + 1
        return counts
    finally:
        admin.close()


def quorum_leader(env: dict[str, str]) -> int:
    """The node whose controller leads the KRaft quorum now (Kafka's own metadata-quorum tool)."""
    jars = config.PROJECT_ROOT / ".cache" / "kafka-jars" / config.get("SANDAN_KAFKA_VERSION")
    done = subprocess.run(["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", f"{jars}/*",
                           "org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server",
                           kafka_io.bootstrap(), "describe", "--status"],
                          capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"^LeaderId:\s+(\d+)", done.stdout, re.M)
    assert done.returncode == 0 and found, f"metadata quorum status:\n{done.stdout}{done.stderr}"
    return int(found.group(1))


def stop_node(env: dict[str, str], node: int) -> None:
    """A clean stop (SIGTERM: the controller resigns, the broker shuts down), waited for."""
    pid = int((Path(env["SANDAN_LOCAL_DIR"]) / "kafka" / f"node-{node}" / "kafka.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text():
        assert time.monotonic() < deadline, f"Kafka node {node} did not stop within 120 s of SIGTERM"
        time.sleep(0.1)


def run_topics(prefix: str) -> list[str]:
    admin = kafka_io.admin()
    try:
        return sorted(t for t in admin.list_topics() if t.startswith(prefix))
    finally:
        admin.close()


def replication_of(topics: list[str]) -> dict[str, tuple[str, set]]:
    """Topic -> (min.insync.replicas, the set of replica lists and ISRs of its partitions)."""
    admin = kafka_io.admin()
    try:
        configs = topic_configs(admin, topics)
        found = {}
        for topic in admin.describe_topics(topics):
            shapes = {(tuple(sorted(p["replica_nodes"])), tuple(sorted(p["isr_nodes"]))) for p in topic["partitions"]}
            found[topic["name"]] = (configs[topic["name"]]["min.insync.replicas"]["value"], shapes)
        return found
    finally:
        admin.close()


def producer_settings() -> dict[str, tuple]:
    """(acks, idempotent) of every producer sandan builds: the command line's, a worker's (plain
    and transactional) and the gateway's."""
    async def built() -> dict[str, tuple]:
        cli = kafka_io.producer()
        try:
            found = {"cli": (cli.config["acks"], cli.config["enable_idempotence"])}
        finally:
            cli.close()
        worker = PartitionWorker("cluster-probe", ["unused"])
        aio = {"worker": worker._producer(), "worker task": worker._producer("cluster-probe-0"),
               "gateway": KafkaPublisher(kafka_io.bootstrap()).producer.make()}
        for name, producer in aio.items():  # never started: only what they were built with
            found[name] = (producer._sender._acks, producer._txn_manager is not None)
        return found

    return asyncio.run(built())


# The small run's paced load: long enough for both faults and the killed node's return (each
# `stack up kafka` waits for all three nodes) to fall within it.
SMALL = dict(count=600, load_s=60.0)


@pytest.mark.parametrize("size", scenario.SIZES)
def test_three_nodes_broker_killed_mid_load_loses_nothing_acknowledged(size, cluster, on_cluster, topic_prefix, rnd):
    killed: list[tuple[int, int]] = []  # (node, partitions of the run it led)
    controller_restarts: list[int] = []
    runs = private_stack.PrivateStack(private_stack.settings())  # its folder, not its servers
    # at load: the session's offered rate, measured here, on the cluster, when no scenario measured it before
    plan = scenario.sized(size, runs, topic_prefix, **scenario.LONG_OUTAGE, **({} if size == "at-load" else SMALL))

    async def inject(p):
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(scenario.moment(plan, rnd, 0.2, 0.5))
        counts = await asyncio.to_thread(leaders, await asyncio.to_thread(run_topics, p.prefix))
        node = max(sorted(counts), key=lambda n: counts[n])
        p.faults.record(f"Kafka node {node} (leading {counts[node]} partitions) killed with SIGKILL")
        await asyncio.to_thread(kill_node, cluster, node)
        killed.append((node, counts[node]))
        await asyncio.sleep(rnd.uniform(1.0, 4.0))
        await asyncio.to_thread(stack, cluster, "up", "kafka")  # starts the killed node; waits for all three
        # then the active controller restarts, later in the load, with the first node back
        await asyncio.sleep(max(0.0, scenario.moment(plan, rnd, 0.6, 0.8) - (loop.time() - started)))
        leader = await asyncio.to_thread(quorum_leader, cluster)
        p.faults.record(f"Kafka node {leader}, the active KRaft controller, stopped and started again")
        await asyncio.to_thread(stop_node, cluster, leader)
        controller_restarts.append(leader)
        await asyncio.to_thread(stack, cluster, "up", "kafka")

    pipeline = Pipeline(f"kafka-3-nodes-{size}", topic_prefix, runs.runs_dir(), plan)
    findings = scenario.run(f"three Kafka nodes: leader kill -9, controller restart [{size}]", pipeline, inject)
    assert not findings, findings.text()
    assert len(killed) == 1 and killed[0][1] > 0, killed
    assert len(controller_restarts) == 1, controller_restarts

    topics = run_topics(pipeline.prefix)
    assert any(t.endswith("-changelog") for t in topics), f"no changelog among {topics}"
    deadline = time.monotonic() + 90
    while True:  # the node is back and has caught up: every partition has three replicas in sync
        found = replication_of([*topics, *INTERNAL])
        if all(shape == {((1, 2, 3), (1, 2, 3))} for _, shape in found.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {t: v for t, v in found.items() if v != ("2", {((1, 2, 3), (1, 2, 3))})} == {}
    assert producer_settings() == {"cli": (-1, True), "worker": (-1, True), "worker task": (-1, True),
                                   "gateway": (-1, True)}
