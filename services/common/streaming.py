"""What the stream workers share: group and worker identities, state folders, retries, the
output ``Publisher`` and the consumer-lag gauge (``partition_worker`` runs every worker):

* Static group membership: a worker restarted after a crash takes its old place in the
  group at once, without a rebalance.
* Table files under a folder of the worker's own identity: two workers of one service on a
  host (SANDAN_WORKER_INDEX 0 and 1) never open the same RocksDB files, and a restarted worker
  finds its own again.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from kafka.errors import KafkaError

from services.common import config, topics
from services.common.avro import AvroCodec
from services.common.outputs import Output
from services.common.redis_client import FAILOVER_ERRORS, refused_for_now

# Redis's include a Sentinel failover (no primary yet, a demoted primary refusing writes).
TRANSIENT = (*FAILOVER_ERRORS, ConnectionError, asyncio.TimeoutError, KafkaError)


def transient(exc: BaseException) -> bool:
    """A fault that passes by itself: also Redis refusing for a state of its own (its disk full)."""
    return isinstance(exc, TRANSIENT) or refused_for_now(exc)


def app_id(name: str) -> str:
    return config.get("SANDAN_TOPIC_PREFIX") + f"sandan-{name}"


def worker_instance_id(app: str) -> str:
    return config.get("SANDAN_WORKER_ID") or f"{socket.gethostname()}-{app}-{config.get('SANDAN_WORKER_INDEX')}"


def state_folder(name: str) -> Path:
    """Where a worker of service ``name`` keeps its local state: a folder of its own identity,
    so two workers on one host never share files and a restarted one finds its own again."""
    folder = Path(config.get("SANDAN_LOCAL_DIR")) / "state" / worker_instance_id(app_id(name))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Publisher:
    """Encodes outputs and hands them straight to a Kafka producer.

    The worker flushes that producer before it commits the input offsets, so delivery stays
    at-least-once. A record that appears in several outputs (a verdict on two topics) is
    encoded once, and ``encoded`` can name records whose bytes are already at hand (an input
    passed on as is). ``send(topic, key, value)`` hands one record over and returns its
    delivery future; the sender looks after deliveries (partition_worker checks them all after
    each flush, before the commit).
    """

    def __init__(self, send: Callable[[str, bytes | None, bytes], Awaitable[asyncio.Future]], wire: AvroCodec,
                 count: Callable[[Output], None] | None = None) -> None:
        self._send, self.wire, self.count = send, wire, count
        self.names = {t.name: t.full_name for t in topics.TOPICS}

    def prepare(self, outputs: Iterable[Output], *, encoded: dict[int, bytes] | None = None
                ) -> list[tuple[Output, bytes]]:
        """Every output with its wire bytes; raises WireError before anything is sent, so a
        caller that encodes before it keeps its state never keeps a state whose outputs
        cannot go out."""
        done: dict[int, bytes] = dict(encoded or {})
        prepared = []
        for o in outputs:
            value = done.get(id(o.record))
            if value is None:
                value = done[id(o.record)] = self.wire.encode(o.schema, o.record)
            prepared.append((o, value))
        return prepared

    async def send(self, prepared: Iterable[tuple[Output, bytes]], *, count: bool = True) -> None:
        send = self._send
        for o, value in prepared:
            await send(self.names[o.topic], o.key, value)
            if count and self.count is not None:
                self.count(o)

    async def publish(self, outputs: Iterable[Output], *, count: bool = True,
                      encoded: dict[int, bytes] | None = None) -> None:
        await self.send(self.prepare(outputs, encoded=encoded), count=count)


_LAG = None


def lag_gauge():
    """``sandan_consumer_lag{topic,partition}``: messages on the broker a worker has not consumed
    yet, for the partitions it owns (alerts fire when it keeps growing)."""
    global _LAG
    if _LAG is None:
        from prometheus_client import Gauge
        _LAG = Gauge("sandan_consumer_lag", "Messages behind the end of each owned input partition",
                     ["topic", "partition"])
    return _LAG


_HELD = None


def held_counter():
    """``sandan_input_holds_total{topic}``: times an input partition was paused for running ahead of
    a co-partitioned input that is catching up (``input_alignment``); grows with backlogs only."""
    global _HELD
    if _HELD is None:
        from prometheus_client import Counter
        _HELD = Counter("sandan_input_holds_total", "Input partitions paused for running ahead of their task's other inputs",
                        ["topic"])
    return _HELD


_LOST = None


def lost_counter():
    """``sandan_worker_lost_total``: times a stream worker found its group had moved on without it
    (scope worker: its session expired) and dropped the work since its last commit to join again."""
    global _LOST
    if _LOST is None:
        from prometheus_client import Counter
        _LOST = Counter("sandan_worker_lost_total", "Times a stream worker dropped its uncommitted work and rejoined its group")
    return _LOST


_COMMIT = None


def commit_histogram():
    """``sandan_commit_seconds``: how long a stream worker's commits take (flush, offsets and, in
    exactly_once, every task's transaction). Outputs stay unseen for the commit interval plus this."""
    global _COMMIT
    if _COMMIT is None:
        from prometheus_client import Histogram
        _COMMIT = Histogram("sandan_commit_seconds", "Duration of a stream worker's commit (outputs unseen until it ends)",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
    return _COMMIT


async def with_retry(step, log: logging.Logger):
    """Redis or Kafka away: wait and try again; good input is never dead-lettered for it."""
    delay = 0.2
    while True:
        try:
            return await step()
        except Exception as exc:  # noqa: BLE001 - sorted just below: anything else is raised
            if not transient(exc):
                raise
            log.warning("transient failure, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
