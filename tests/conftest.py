"""Fixtures shared by every test: the real local stack and per-session topic isolation.

``stack`` reuses a Kafka + Redis that already answer (``make up``, docker compose, CI) and
otherwise starts them with ``scripts/stack.sh up``; it stops at the end only what it started.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.common import config

STACK_SH = config.PROJECT_ROOT / "scripts" / "stack.sh"


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    redis_url: str


def _accepts_connections(bootstrap: str) -> bool:
    # A refused connection answers at once; the admin client would retry for seconds first.
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1).close()
            return True
        except (OSError, ValueError):
            continue
    return False


def kafka_answers(bootstrap: str) -> bool:
    """True when a broker answers a metadata request on ``bootstrap`` and is not fenced."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not _accepts_connections(bootstrap):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="sandan-tests-probe",
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
        )
    except KafkaError:
        return False
    try:
        brokers = admin.describe_cluster().get("brokers") or []
        return any(not b.get("is_fenced") for b in brokers)
    except KafkaError:
        return False
    finally:
        admin.close()


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _stack_sh(*args: str) -> str | None:
    """Run scripts/stack.sh; None on success, else its output for the failure message."""
    proc = subprocess.run(
        [str(STACK_SH), *args], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode == 0:
        return None
    return f"scripts/stack.sh {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    bootstrap = config.get("SANDAN_KAFKA_BOOTSTRAP")
    redis_url = config.get("SANDAN_REDIS_URL")
    started = [
        name
        for name, up in (("kafka", kafka_answers(bootstrap)), ("redis", redis_answers(redis_url)))
        if not up
    ]
    if started:
        problem = _stack_sh("up", *started)
        # stack.sh serves SANDAN_KAFKA_PORT / SANDAN_REDIS_PORT; if the URLs point elsewhere the
        # tests would talk to nothing, so say so instead of timing out in the first test.
        if problem is None and not kafka_answers(bootstrap):
            problem = (f"started the local stack, but SANDAN_KAFKA_BOOTSTRAP={bootstrap} does not "
                       "answer; does it match SANDAN_KAFKA_PORT?")
        if problem is None and not redis_answers(redis_url):
            problem = (f"started the local stack, but SANDAN_REDIS_URL={redis_url} does not "
                       "answer; does it match SANDAN_REDIS_PORT?")
        if problem is not None:
            _stack_sh("down", *started)
            pytest.fail(problem, pytrace=False)
    try:
        yield Stack(bootstrap=bootstrap, redis_url=redis_url)
    finally:
        if started:
            problem = _stack_sh("down", *started)
            if problem is not None:
                print(problem)


@pytest.fixture(scope="session")
def topic_prefix() -> Iterator[str]:
    """A prefix unique to this test session, for topic names, group ids and Redis keys.

    It is also exported as SANDAN_TOPIC_PREFIX so services started by tests use it. At the end
    the session's topics and Redis keys are deleted (services/tools/runs.py says why), unless
    SANDAN_KEEP_TEST_TOPICS=1 asks to keep them for a look.
    """
    prefix = f"t{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}-"
    previous = os.environ.get("SANDAN_TOPIC_PREFIX")
    os.environ["SANDAN_TOPIC_PREFIX"] = prefix
    try:
        yield prefix
    finally:
        if previous is None:
            os.environ.pop("SANDAN_TOPIC_PREFIX", None)
        else:
            os.environ["SANDAN_TOPIC_PREFIX"] = previous
        if os.environ.get("SANDAN_KEEP_TEST_TOPICS") != "1" and kafka_answers(config.get("SANDAN_KAFKA_BOOTSTRAP")):
            from services.tools import runs

            try:
                runs.forget(prefix)
            except Exception as exc:  # noqa: BLE001 - a clean-up problem must not hide the tests' outcome
                print(f"could not delete the session's topics and keys ({prefix}*): {exc!r}")
