"""A consumer-group rebalance under load (issue 9, §1): two workers of each stream service
(order_match, tax_guarantee, returns); one of each leaves (stopped) and, once its group gave
its partitions to the other, rejoins.

Workers use static membership (services/common/streaming.py), so a worker that stops does
not leave the group at once: the group rebalances when its session times out
(SANDAN_SESSION_TIMEOUT), then again when it comes back.
"""
from __future__ import annotations

import asyncio

import pytest

from services.common import config
from tests.faults import scenario
from tests.faults.pipeline import WORKERS


@pytest.mark.parametrize("size", scenario.SIZES)
def test_a_worker_leaving_and_rejoining_loses_and_duplicates_nothing(size, private, topic_prefix, rnd):
    away_s = config.get_int("SANDAN_SESSION_TIMEOUT") + 4  # long enough for the group to rebalance without it
    leaving = [f"{name}-2" for name in WORKERS]
    plan = scenario.sized(size, private, topic_prefix, workers={name: 2 for name in WORKERS}, **scenario.LONG_OUTAGE)

    async def inject(p):
        await asyncio.sleep(scenario.moment(plan, rnd, 0.1, 0.3))
        p.faults.record("one worker of each service left its group")
        for name in leaving:
            p.services.stop(name)
        await asyncio.sleep(away_s)
        p.faults.record("they rejoined")
        for name in leaving:
            p.services.start(name)

    findings = scenario.run("rebalance: 1 of 2 workers leaves, rejoins",
                            scenario.pipeline("rebalance", private, topic_prefix, plan), inject)
    assert not findings, findings.text()
