"""kill -9 of each sandan process at random moments under load, then a restart (issue 9, §1)."""
from __future__ import annotations

import asyncio

import pytest

from tests.faults import scenario

KILLS = 3


@pytest.mark.parametrize("service", ["order-match", "tax-guarantee", "returns", "gateway"])
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(service, private, topic_prefix, rnd):
    async def inject(p):
        for _ in range(KILLS):
            await asyncio.sleep(rnd.uniform(1.0, 6.0))
            p.faults.record(f"kill -9 {service}")
            p.services.kill(service)
            await asyncio.sleep(rnd.uniform(0.2, 2.0))
            p.services.start(service)

    pipeline = scenario.pipeline(f"kill-{service}", private, topic_prefix)
    findings = scenario.run(f"kill -9 {service.replace('-', '_')} x{KILLS}", pipeline, inject)
    assert not findings, findings.text()
