"""Kafka over SASL_SSL with SCRAM-SHA-512, on a broker of the test's own (`scripts/stack.sh up
kafka` with SANDAN_KAFKA_SECURE_PORT): sandan's topics created, records produced with the
project's producer, read by a consumer-group member built from the settings, by a tool's reader
and by the gateway's stream reader; the password never logged. A wrong password and an unknown CA
each end a command with one line saying which setting to look at.

The broker runs on ports of its own (25092 plaintext, 25093 controller, 25094 SASL_SSL, or the
next free set 100 higher), below the kernel's ephemeral range, with its data in a tmp folder:
the shared stack is not touched.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from services.common import config, kafka_io, kafka_security, topics
from services.gateway.kafka_bridge import StreamStats, TopicReader
from tests.local_ports import free_base, stack

pytestmark = pytest.mark.integration
RECORDS = 300


def free_base_port() -> int:
    """The first of 25092, 25192, ... whose three ports (plaintext, controller, SASL_SSL) nobody holds."""
    return free_base(25092, (0, 1, 2), "the SASL_SSL broker")


@pytest.fixture(scope="module")
def broker() -> dict[str, str]:
    # Not under pytest's tmp_path: other pytest sessions on the machine prune those folders.
    local = tempfile.mkdtemp(prefix="sandan-kafka-secure-")
    port = free_base_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SANDAN_")},
           "SANDAN_KAFKA_PORT": str(port), "SANDAN_KAFKA_CONTROLLER_PORT": str(port + 1),
           "SANDAN_KAFKA_SECURE_PORT": str(port + 2), "SANDAN_KAFKA_HEAP": "256m", "SANDAN_LOCAL_DIR": local}
    try:
        stack(env, "up", "kafka")
        yield env
    finally:
        try:
            stack(env, "down", "kafka")
        finally:
            shutil.rmtree(local, ignore_errors=True)


@pytest.fixture
def client_env(broker) -> dict[str, str]:
    """The settings `stack.sh env` prints for the SASL_SSL listener, on topics of this test."""
    exported = dict(line.removeprefix("export ").split("=", 1) for line in stack(broker, "env").splitlines())
    assert exported["SANDAN_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{broker['SANDAN_KAFKA_SECURE_PORT']}"
    assert exported["SANDAN_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    return {**exported, "SANDAN_TOPIC_PREFIX": f"secure-{uuid.uuid4().hex[:8]}.", "SANDAN_SCHEMA_REGISTRY_URL": "",
            "SANDAN_WIRE_FORMAT": "sandan", "SANDAN_KAFKA_CONNECT_TIMEOUT": "5"}


@pytest.fixture
def secured(client_env, monkeypatch) -> str:
    for name, value in client_env.items():
        monkeypatch.setenv(name, value)
    return Path(client_env["SANDAN_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()


def test_sasl_ssl_scram_carries_topics_producer_group_consumer_and_readers(secured, caplog):
    caplog.set_level(logging.DEBUG)  # every client's own chatter too: the password must be in none of it
    created, _ = kafka_io.create_topics()
    assert sorted(created) == sorted(spec.full_name for spec in topics.TOPICS)
    topic = topics.name("documents.order")
    sent = {f"ORD{n:05d}".encode() for n in range(RECORDS)}
    producer = kafka_io.producer()
    try:
        for key in sorted(sent):
            producer.send(topic, key=key, value=b"v-" + key)
        producer.flush(timeout=60)
    finally:
        producer.close()

    async def group_member() -> set[bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_io.bootstrap(), group_id=f"g-{uuid.uuid4().hex}",
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    **kafka_security.aiokafka_kwargs())
        await consumer.start()
        try:
            got: set[bytes] = set()
            for _ in range(600):  # a bound only, so a broken client fails instead of hanging
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    got.update(r.key for r in batch)
                if len(got) >= RECORDS:
                    break
            await consumer.commit()  # the group coordinator answers over SASL_SSL too
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(group_member()) == sent
    assert {r.key for r in kafka_io.read_all(topic, timeout_s=60)} == sent

    async def gateway_reader() -> set[bytes]:
        reader, stop, got = TopicReader(kafka_io.bootstrap(), 64, 1 << 20), asyncio.Event(), set()
        async for records in reader.read("documents.order", None, False, stop, StreamStats("Subscribe", "t"),
                                         lambda lag: None):
            got.update(r.key for r in records)
            if len(got) >= RECORDS:
                stop.set()
                break
        return got

    assert asyncio.run(gateway_reader()) == sent
    assert caplog.records, "DEBUG logging was on"
    assert secured not in caplog.text


def sandan(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANDAN_")}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**clean, **env}, cwd=config.PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_one_line(done: subprocess.CompletedProcess, says: str, secret: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr and secret not in done.stdout + done.stderr


def test_a_wrong_password_ends_a_command_with_one_line_naming_the_login(client_env):
    wrong = "wrong-" + uuid.uuid4().hex
    env = {**{k: v for k, v in client_env.items() if k != "SANDAN_KAFKA_SASL_PASSWORD_FILE"},
           "SANDAN_KAFKA_SASL_PASSWORD": wrong}
    done = sandan(env, "topics", "create")
    assert_one_line(done, "refused the SCRAM-SHA-512 login of 'sandan': wrong SANDAN_KAFKA_SASL_USERNAME or password",
                    wrong)
    served = sandan({**env, "SANDAN_GATEWAY_LISTEN": "127.0.0.1:0"}, "gateway", "serve")
    assert served.returncode != 0 and "Traceback" not in served.stderr and wrong not in served.stderr
    assert served.stderr.strip().splitlines()[-1].startswith("gateway: Kafka at ")


def test_a_broker_certificate_from_an_unknown_ca_ends_a_command_with_one_line(client_env, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(tmp_path / "other.pem")],
                   check=True, capture_output=True, timeout=60)
    password = Path(client_env["SANDAN_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()
    done = sandan({**client_env, "SANDAN_KAFKA_SSL_CAFILE": str(tmp_path / "other.pem")}, "topics", "create")
    assert_one_line(done, f"TLS certificate not trusted with SANDAN_KAFKA_SSL_CAFILE={tmp_path / 'other.pem'}",
                    password)
