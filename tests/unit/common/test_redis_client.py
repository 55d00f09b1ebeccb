"""Every Redis client from one place: the URL's server, or the primary Sentinels name (issue 20)."""
from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.exceptions import ReadOnlyError, ResponseError
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool

from services.common import redis_client, streaming


@pytest.fixture
def settings(monkeypatch):
    def put(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("SANDAN_REDIS_SENTINELS", raising=False)
    monkeypatch.delenv("SANDAN_REDIS_MASTER", raising=False)
    return put


def test_sentinels_are_a_comma_list_of_host_port():
    assert redis_client.parse_sentinels("") == ()
    assert redis_client.parse_sentinels(" 127.0.0.1:26379, localhost:26380,[::1]:26381 ,") == (
        ("127.0.0.1", 26379), ("localhost", 26380), ("::1", 26381))


@pytest.mark.parametrize("bad", ["127.0.0.1", "127.0.0.1:", ":26379", "host:port", "host:0", "host:70000"])
def test_a_bad_sentinel_address_stops_with_the_setting_named(bad):
    with pytest.raises(SystemExit, match="SANDAN_REDIS_SENTINELS") as stop:
        redis_client.parse_sentinels(f"127.0.0.1:26379,{bad}")
    assert repr(bad) in str(stop.value)


def test_without_sentinels_the_url_is_the_server(settings):
    settings(SANDAN_REDIS_URL="redis://127.0.0.1:16379/3")
    client = redis_client.connect()
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 16379, 3)
    assert not isinstance(client.connection_pool, AsyncSentinelPool)
    sync = redis_client.connect_sync()
    assert not isinstance(sync.connection_pool, SentinelConnectionPool)
    assert sync.connection_pool.connection_kwargs["db"] == 3
    sync.close()


def test_with_sentinels_the_named_primary_with_the_urls_db_and_password(settings):
    settings(SANDAN_REDIS_URL="redis://:s3cret@ignored:1/2", SANDAN_REDIS_SENTINELS="127.0.0.1:26379,127.0.0.1:26380",
             SANDAN_REDIS_MASTER="sandan-a")
    for client in (redis_client.connect(), redis_client.connect_sync()):
        pool = client.connection_pool
        assert isinstance(pool, (AsyncSentinelPool, SentinelConnectionPool)) and pool.is_master
        assert pool.service_name == "sandan-a"
        assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "s3cret")
        sentinels = pool.sentinel_manager.sentinels
        assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                for s in sentinels] == [("127.0.0.1", 26379), ("127.0.0.1", 26380)]
    assert "s3cret" not in redis_client.describe() and "sandan-a" in redis_client.describe()


def test_a_sentinel_list_needs_a_master_name(settings):
    settings(SANDAN_REDIS_SENTINELS="127.0.0.1:26379", SANDAN_REDIS_MASTER=" ")
    with pytest.raises(SystemExit, match="SANDAN_REDIS_MASTER"):
        redis_client.connect()


def test_the_password_never_shows_in_the_description(settings):
    settings(SANDAN_REDIS_URL="redis://user:s3cret@127.0.0.1:16379/0")
    assert redis_client.describe() == "redis://127.0.0.1:16379/0"


@pytest.mark.parametrize("error", [ReadOnlyError("READONLY You can't write against a read only replica."),
                                   MasterNotFoundError("No master found for 'sandan'"),
                                   ResponseError("MISCONF Errors writing to the AOF file: No space left on device"),
                                   ResponseError("Command # 1 (SET sandan:waybill:SD1 ...) of pipeline caused error: "
                                                 "('MISCONF Errors writing to the AOF file: No space left on device',)"),
                                   ResponseError("OOM command not allowed when used memory > 'maxmemory'.")])
def test_a_failover_error_is_waited_out_not_raised(error, monkeypatch):
    """During a failover a worker's step meets a demoted primary or no primary at all: it waits and
    tries again (a raised error would end the worker and a redelivery would follow)."""
    monkeypatch.setattr(streaming.asyncio, "sleep", _no_sleep)
    calls = []

    async def step():
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "done"

    assert asyncio.run(streaming.with_retry(step, logging.getLogger("test"))) == "done"
    assert len(calls) == 3


def test_any_other_refusal_of_redis_is_raised_at_once(monkeypatch):
    """A script's own error is the handler's to deal with: retrying it would only repeat it."""
    monkeypatch.setattr(streaming.asyncio, "sleep", _no_sleep)
    calls = []

    async def step():
        calls.append(1)
        raise ResponseError("Command # 1 (EVALSHA 17 1 sandan:quota:MISCONF x) of pipeline caused error: "
                            "('ERR Error running script (call to f_1): user_script:12: bad argument',)")

    with pytest.raises(ResponseError):
        asyncio.run(streaming.with_retry(step, logging.getLogger("test")))
    assert len(calls) == 1


async def _no_sleep(_seconds):
    return None


def test_every_redis_client_of_the_services_comes_from_redis_client():
    """A client made elsewhere would ignore SANDAN_REDIS_SENTINELS and stay with a dead primary."""
    from services.common import config

    makers = ("from_url(", "Redis(", "Sentinel(", "StrictRedis(")
    found = [f"{path.relative_to(config.PROJECT_ROOT)}:{n}"
             for path in (config.PROJECT_ROOT / "services").rglob("*.py") if path.name != "redis_client.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if any(m in line for m in makers)]
    assert found == []


class FakeRedis:
    """Records the pipelines sent; WAIT answers the next of ``acks``."""

    def __init__(self, *acks: int) -> None:
        self.acks, self.sent = list(acks), []

    def pipeline(self, transaction=True):
        redis, queued = self, []

        class Pipe:
            def set(self, *args, **kwargs):
                queued.append(("SET", args, kwargs))

            def execute_command(self, *args):
                queued.append(args)

            async def execute(self):
                redis.sent.append(list(queued))
                return [True] + ([redis.acks.pop(0)] if queued[-1][0] == "WAIT" else [])
        return Pipe()


def test_no_replicas_asked_sends_nothing():
    fake = FakeRedis()
    asyncio.run(redis_client.ReplicaWait(fake, 0, 100)())
    assert fake.sent == []


def test_the_wait_writes_then_waits_on_one_connection_and_a_short_count_is_transient():
    fake = FakeRedis(1, 0)
    wait = redis_client.ReplicaWait(fake, 1, 250)
    asyncio.run(wait())
    [[barrier, waited]] = fake.sent
    assert barrier == ("SET", (redis_client.BARRIER_KEY, b"1"), {"px": redis_client.BARRIER_TTL_MS})
    assert waited == ("WAIT", 1, 250)
    with pytest.raises(redis_client.ReplicasBehind, match="0 of 1 Redis replicas"):
        asyncio.run(wait())
    assert redis_client.ReplicasBehind in streaming.TRANSIENT


def test_a_step_whose_writes_too_few_replicas_hold_is_taken_again_before_anything_goes_on():
    fake = FakeRedis(1, 2)   # the first wait: one replica of two
    runs = []

    async def step():
        runs.append(len(fake.sent))
        return "outputs"

    wait = redis_client.ReplicaWait(fake, 2, 100)
    assert asyncio.run(streaming.with_retry(wait.after(step), logging.getLogger("test"))) == "outputs"
    assert runs == [0, 1] and len(fake.sent) == 2   # the step ran again after the short wait


def test_the_wait_settings(settings):
    settings(SANDAN_REDIS_URL="redis://127.0.0.1:16379/0", SANDAN_REDIS_WAIT_REPLICAS="1",
             SANDAN_REDIS_WAIT_TIMEOUT_MS="300")
    wait = redis_client.replica_wait(object())
    assert (wait.replicas, wait.timeout_ms) == (1, 300)
    settings(SANDAN_REDIS_WAIT_REPLICAS="-1")
    with pytest.raises(SystemExit, match="SANDAN_REDIS_WAIT_REPLICAS"):
        redis_client.replica_wait(object())
    settings(SANDAN_REDIS_WAIT_REPLICAS="1", SANDAN_REDIS_WAIT_TIMEOUT_MS="0")
    with pytest.raises(SystemExit, match="SANDAN_REDIS_WAIT_TIMEOUT_MS"):
        redis_client.replica_wait(object())
