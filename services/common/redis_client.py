"""Every sandan Redis client, made in one place: the single server of ``SANDAN_REDIS_URL``, or,
when ``SANDAN_REDIS_SENTINELS`` names Sentinels, whichever server they say is the primary of
``SANDAN_REDIS_MASTER`` (the URL then gives only the db, user name and password).

A Sentinel-managed client asks the Sentinels for the primary whenever it opens a connection, so
after a failover its next connection goes to the promoted replica. Until the Sentinels agree on
one it raises ``ConnectionError``/``MasterNotFoundError`` (and ``ReadOnlyError`` from a demoted
primary); ``FAILOVER_ERRORS`` lists them for the workers' retry (``streaming.TRANSIENT``).

Replication is asynchronous: a write only the primary holds is lost when a replica is promoted.
``ReplicaWait`` (``SANDAN_REDIS_WAIT_REPLICAS``) makes a worker wait, after the Redis writes of
a batch and before it publishes what follows from them, until that many replicas have them.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError, ReadOnlyError, RedisError, ResponseError, TimeoutError
from redis.sentinel import MasterNotFoundError

from services.common import config



class ReplicasBehind(RedisError):
    """Fewer replicas than SANDAN_REDIS_WAIT_REPLICAS acknowledged a batch's writes in time."""


# MasterNotFoundError is a ConnectionError; named for the reader.
FAILOVER_ERRORS = (ConnectionError, MasterNotFoundError, ReadOnlyError, TimeoutError, ReplicasBehind)

# Error codes of a Redis that refuses for a state of its own which passes (its disk or memory
# full, a script running, loading, no replicas): nothing to do with the request. READONLY is
# not here: redis-py raises it as ReadOnlyError, one of the FAILOVER_ERRORS.
WAIT_CODES = frozenset({"MISCONF", "OOM", "BUSY", "LOADING", "NOREPLICAS", "MASTERDOWN", "TRYAGAIN"})


def refused_for_now(exc: BaseException) -> bool:
    """Redis refused a command for its own state (``WAIT_CODES``; e.g. MISCONF when it cannot
    append to its full disk): it takes the command again once that passes, so a caller waits
    instead of failing, and never blames the document in hand."""
    if not isinstance(exc, ResponseError):
        return False
    # in a pipeline redis-py rewrites the message as "Command # n (...) of pipeline caused error: ('MISCONF ...',)"
    said = str(exc).rpartition("of pipeline caused error: ")[2].lstrip("('\"")
    return said.split(" ", 1)[0] in WAIT_CODES


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


# Written (and expiring) only to carry WAIT: see ``ReplicaWait``.
BARRIER_KEY = "sandan:replica-wait"
BARRIER_TTL_MS = 60_000


class ReplicaWait:
    """``await wait()``: every write this process's clients made so far is on ``replicas``
    replicas, or ``ReplicasBehind`` (a transient error: the worker's ``with_retry`` takes the
    step again, and the step's scripts, idempotent per declaration or command, re-answer from
    what Redis holds then, on whichever server is the primary by then).

    WAIT counts the writes of the connection it is sent on, and a batch's writes go over
    several pooled connections; so a write of our own goes first on the same connection as
    the WAIT: replication is one ordered stream, and a replica that has this write has every
    write the primary took before it. 0 replicas: nothing is sent."""

    def __init__(self, client, replicas: int, timeout_ms: int) -> None:
        self.client, self.replicas, self.timeout_ms = client, replicas, timeout_ms

    async def __call__(self) -> None:
        if self.replicas <= 0:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.set(BARRIER_KEY, b"1", px=BARRIER_TTL_MS)
        pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
        _, acknowledged = await pipe.execute()
        if int(acknowledged) < self.replicas:
            raise ReplicasBehind(f"{acknowledged} of {self.replicas} Redis replicas (SANDAN_REDIS_WAIT_REPLICAS) have"
                                 f" this batch's writes after {self.timeout_ms} ms; nothing is published before they do")

    def after(self, step):
        """``step`` (an async callable) followed by the wait: what ``with_retry`` takes again as one."""
        async def waited():
            result = await step()
            await self()
            return result
        return waited


def replica_wait(client) -> ReplicaWait:
    """The wait the settings ask for, on ``client`` (the one the worker writes with)."""
    replicas = config.get_int("SANDAN_REDIS_WAIT_REPLICAS")
    if replicas < 0:
        raise RedisSettingError(f"SANDAN_REDIS_WAIT_REPLICAS: {replicas} is below 0")
    timeout = config.get_int("SANDAN_REDIS_WAIT_TIMEOUT_MS")
    if timeout <= 0:
        raise RedisSettingError(f"SANDAN_REDIS_WAIT_TIMEOUT_MS: {timeout} is not above 0 (WAIT 0 blocks for ever)")
    return ReplicaWait(client, replicas, timeout)
