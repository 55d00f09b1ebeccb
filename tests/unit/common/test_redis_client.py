"""Every Redis client from one place: the URL's server, or the primary Sentinels name (issue 20)."""
from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.exceptions import ReadOnlyError
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
                                   MasterNotFoundError("No master found for 'sandan'")])
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
