"""SANDAN_REDIS_WAIT_REPLICAS on a real primary and replica started by the test (issue 20): a
step's Redis writes are on the replica before the step is done; with the replica stopped the
step fails as transient, and the workers' retry takes it again once the replica is back, deducting
nothing twice."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from decimal import Decimal

import pytest
import redis

from services.common import redis_client, streaming
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.redis_store import RedisAccountStore
from tests.unit.tax_guarantee.samples import NOW_MS, command_record, verdict

from .redis_sentinel import SentinelGroup

pytestmark = pytest.mark.integration
CODE = "91330106MA2H3D7P5N"
NS = "sandan:wait-replicas-"


def start_pair(group: SentinelGroup, timeout_s: float = 30) -> tuple[int, int]:
    primary, replica = group.ports[:2]
    group.nodes[primary] = group._server(primary)
    group.nodes[replica] = group._server(replica, "--replicaof", "127.0.0.1", str(primary))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if redis.Redis(port=replica, socket_timeout=1).info("replication").get("master_link_status") == "up":
                return primary, replica
        except redis.RedisError:
            pass
        assert time.monotonic() < deadline, f"the replica never linked up; see {group.folder}"
        time.sleep(0.2)


def test_a_step_is_done_only_once_the_replica_holds_its_writes(tmp_path, monkeypatch):
    group = SentinelGroup(tmp_path / "redis")
    try:
        primary, replica = start_pair(group)
        monkeypatch.setenv("SANDAN_REDIS_URL", f"redis://127.0.0.1:{primary}/0")
        monkeypatch.delenv("SANDAN_REDIS_SENTINELS", raising=False)
        monkeypatch.setenv("SANDAN_REDIS_WAIT_REPLICAS", "1")
        monkeypatch.setenv("SANDAN_REDIS_WAIT_TIMEOUT_MS", "200")
        on_replica = RedisAccountStore(redis.asyncio.Redis(port=replica), NS)
        asyncio.run(scenario(group, replica, on_replica))
    finally:
        group.stop()


async def scenario(group: SentinelGroup, replica: int, on_replica: RedisAccountStore) -> None:
    client = redis_client.connect()
    processor = GuaranteeProcessor(store=RedisAccountStore(client, NS), quota=None,
                                   thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30)
    wait = redis_client.replica_wait(client)
    register = command_record("register", commandId="r1", assureCode=CODE, kind="bank_guarantee",
                              amount=Decimal(5000), validFrom="20250101", validTo="20351231")
    await wait.after(lambda: processor.on_command(register, NOW_MS))()
    assert (await on_replica.account(CODE)).seq == 1   # on the replica as soon as the step returns

    group.nodes[replica].send_signal(signal.SIGSTOP)   # the replica takes nothing more
    try:
        with pytest.raises(redis_client.ReplicasBehind):
            await wait.after(lambda: processor.on_verdict(verdict("1", tax="10.00", code=CODE), NOW_MS))()
        # as a worker takes it: retried while the replica is away, done once it is back
        retried = asyncio.create_task(streaming.with_retry(
            wait.after(lambda: processor.on_verdict(verdict("1", tax="10.00", code=CODE), NOW_MS)),
            logging.getLogger("test")))
        await asyncio.sleep(1.0)
        assert not retried.done()
    finally:
        group.nodes[replica].send_signal(signal.SIGCONT)
    handled = await retried
    assert handled.replayed   # the retry answered from the outcome the first attempt recorded
    entry = handled.outputs[0].record
    assert (entry["entryId"], entry["seq"], entry["outstanding"]) == (f"{CODE}/deduct/EBP:O1", 2, Decimal(10))
    held = await on_replica.account(CODE)
    assert (held.seq, held.outstanding) == (2, Decimal(10))   # the replica holds it: deducted once
    await client.aclose()
