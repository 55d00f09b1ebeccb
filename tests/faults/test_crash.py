"""kill -9 of each sandan process at random moments under load, then a restart (issue 9, §1; at load: issue 20)."""
from __future__ import annotations

import asyncio

import pytest

from tests.faults import scenario

KILLS = 3


@pytest.mark.parametrize("service", ["order-match", "tax-guarantee", "returns", "gateway"])
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(service, private, topic_prefix, rnd):
    plan = scenario.at_load(private, topic_prefix)

    async def inject(p):
        for _ in range(KILLS):  # spread over the first 3/4 of the load
            await asyncio.sleep(scenario.moment(plan, rnd, 0.05, 0.25))
            p.faults.record(f"kill -9 {service}")
            p.services.kill(service)
            await asyncio.sleep(rnd.uniform(0.2, 2.0))
            p.services.start(service)

    pipeline = scenario.pipeline(f"kill-{service}", private, topic_prefix, plan)
    findings = scenario.run(f"kill -9 {service.replace('-', '_')} x{KILLS}", pipeline, inject)
    assert not findings, findings.text()
