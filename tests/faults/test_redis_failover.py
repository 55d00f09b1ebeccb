"""Redis failover under load (issue 20, item 5): the whole pipeline (gateway, order_match,
tax_guarantee, returns) at load on a Redis primary with one replica and three Sentinels of its
own (tests/integration/redis_sentinel.py), the primary killed with SIGKILL at a random moment of
the load; a Sentinel promotes the replica and the services follow it (``redis_client`` asks the
Sentinels for the primary on every connection).

Every Redis client of the scenario goes through the Sentinels: the services, the ``sandan``
commands the harness runs (guarantee registration, the rebuilds) and the audit's own reads of
balances and quotas (``Pipeline.redis_state``). ``SANDAN_REDIS_URL`` keeps only the db and names a
port nothing listens on, so a client that ignored the Sentinels could not reach any Redis.

Replication is asynchronous (``SANDAN_REDIS_WAIT_REPLICAS`` left at its default 0): what the
replica had not received when the primary died is gone. So, with the services stopped, each
rebuild runs once and, where it finds differences, again with ``--repair`` (the drill of the
README's Redis failover section; the notes under the table say how much was repaired); then the
audit as for every scenario, on Redis as repaired, and both rebuilds must find Redis equal to
Kafka. No tax bill may be deducted twice: a deduction's ledger entry id is derived from its
declaration, so a second deduction of one bill shows in the duplicated column (one entry id
applied at two ``seq``), and one applied twice in Redis only in a balance off its bills
(mismatched).
"""
from __future__ import annotations

import asyncio
import time

from tests.faults import scenario
from tests.faults.table import TABLE
from tests.integration.redis_sentinel import MASTER, SentinelGroup

NAME = "Redis failover (Sentinel), primary killed at load"
SLUG = "redis-failover"
PROMOTION_WAIT_S = 60  # only bounds a failure: the Sentinels (primary down after 1 s) promote in seconds
NOWHERE = "redis://127.0.0.1:1/0"  # the db for the Sentinels' primary; its server answers nobody


def test_redis_primary_killed_mid_load_the_services_follow_the_promoted_replica(private, topic_prefix, rnd,
                                                                                 monkeypatch):
    # the session's offered rate, measured (when no scenario did before) on the private stack's Redis
    plan = scenario.at_load(private, topic_prefix, **scenario.LONG_OUTAGE)
    group = SentinelGroup(private.runs_dir() / f"{topic_prefix}{SLUG}" / "sentinels")
    seen: dict = {}

    async def inject(p):
        await asyncio.sleep(scenario.moment(plan, rnd, 0.2, 0.6))
        p.faults.record("Redis primary killed with SIGKILL")
        seen["killed"] = await asyncio.to_thread(group.kill_primary)
        killed_at = time.monotonic()
        seen["promoted"] = await asyncio.to_thread(group.wait_promoted, seen["killed"], PROMOTION_WAIT_S)
        seen["after_s"] = time.monotonic() - killed_at

    try:
        group.start()
        # Set before the pipeline is built: service_env copies this process's environment.
        for name, value in {"SANDAN_REDIS_SENTINELS": group.sentinel_setting, "SANDAN_REDIS_MASTER": MASTER,
                            "SANDAN_REDIS_URL": NOWHERE}.items():
            monkeypatch.setenv(name, value)
        pipeline = scenario.pipeline(SLUG, private, topic_prefix, plan)
        findings = scenario.run(NAME, pipeline, inject, repair=True)
    finally:
        group.stop()
    if "promoted" in seen:
        TABLE.notes.append(f"{NAME}: primary :{seen['killed']} killed, replica :{seen['promoted']} promoted"
                           f" {seen['after_s']:.1f} s later")
    assert not findings, findings.text()
    assert seen.get("promoted") not in (None, seen.get("killed")), f"no replica was promoted: {seen}"
