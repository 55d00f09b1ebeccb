"""Every sandan Redis client, made in one place: the single server of ``SANDAN_REDIS_URL``, or,
when ``SANDAN_REDIS_SENTINELS`` names Sentinels, whichever server they say is the primary of
``SANDAN_REDIS_MASTER`` (the URL then gives only the db, user name and password).

A Sentinel-managed client asks the Sentinels for the primary whenever it opens a connection, so
after a failover its next connection goes to the promoted replica. Until the Sentinels agree on
one it raises ``ConnectionError``/``MasterNotFoundError`` (and ``ReadOnlyError`` from a demoted
primary); ``FAILOVER_ERRORS`` lists them for the workers' retry (``streaming.TRANSIENT``).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError
from redis.sentinel import MasterNotFoundError

from services.common import config

# MasterNotFoundError is a ConnectionError; named for the reader.
FAILOVER_ERRORS = (ConnectionError, MasterNotFoundError, ReadOnlyError, TimeoutError)

# Sentinels answer within this; a dead one must not hold every (re)connection up for long.
SENTINEL_TIMEOUT_S = 0.5


class RedisSettingError(SystemExit):
    """A Redis setting that cannot be used: the process stops with one line naming it (as config.get_int)."""


@dataclass(frozen=True)
class Target:
    url: str
    sentinels: tuple[tuple[str, int], ...]   # empty: connect to ``url`` itself
    master: str
    db: int
    username: str | None
    password: str | None


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (IPv6 as ``[::1]:26379``); empty gives none."""
    found = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisSettingError(f"SANDAN_REDIS_SENTINELS: {item!r} is not host:port (a port of 1..65535)")
        found.append((host, int(port)))
    return tuple(found)


def target() -> Target:
    """Where the settings say Redis is."""
    url = config.get("SANDAN_REDIS_URL")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise RedisSettingError(f"SANDAN_REDIS_URL: scheme {parts.scheme!r} is not redis://, rediss:// or unix://")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise RedisSettingError(f"SANDAN_REDIS_URL: database {db_text!r} is not a number")
    sentinels = parse_sentinels(config.get("SANDAN_REDIS_SENTINELS"))
    master = config.get("SANDAN_REDIS_MASTER").strip()
    if sentinels and not master:
        raise RedisSettingError("SANDAN_REDIS_MASTER: empty, but SANDAN_REDIS_SENTINELS is set")
    return Target(url, sentinels, master, int(db_text), unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password else None)


def describe() -> str:
    """Where Redis is, for messages (never the password)."""
    t = target()
    if t.sentinels:
        return f"primary {t.master!r} of Sentinels {','.join(f'{h}:{p}' for h, p in t.sentinels)}"
    parts = urlsplit(t.url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _tls(t: Target) -> dict:
    return {"ssl": True} if t.url.startswith("rediss:") else {}


def connect(**options):
    """An asyncio client (``redis.asyncio.Redis``) of the primary; ``options`` go to every connection."""
    t = target()
    if not t.sentinels:
        import redis.asyncio as aioredis
        return aioredis.from_url(t.url, **options)
    from redis.asyncio.sentinel import Sentinel
    return Sentinel(list(t.sentinels), sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S,
                                                        "socket_connect_timeout": SENTINEL_TIMEOUT_S}).master_for(
        t.master, db=t.db, username=t.username, password=t.password, **_tls(t), **options)


def connect_sync(**options):
    """The same, as a blocking client (``redis.Redis``)."""
    t = target()
    if not t.sentinels:
        import redis
        return redis.Redis.from_url(t.url, **options)
    from redis.sentinel import Sentinel
    return Sentinel(list(t.sentinels), sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S,
                                                        "socket_connect_timeout": SENTINEL_TIMEOUT_S}).master_for(
        t.master, db=t.db, username=t.username, password=t.password, **_tls(t), **options)
