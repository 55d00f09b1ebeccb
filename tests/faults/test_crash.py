"""kill -9 of each sandan process at random moments under load, then a restart (issue 9, §1; at load: issue 20).

`make test-faults` kills each service once, in a random order, in one run at load; the long
tier (`make test-faults-long`) gives each service a run of its own with three kills.
"""
from __future__ import annotations

import asyncio

import pytest

from tests.faults import scenario

SERVICES = ["order-match", "tax-guarantee", "returns", "gateway"]
KILLS = 3


async def _kill_and_restart(p, service: str, rnd) -> None:
    p.faults.record(f"kill -9 {service}")
    p.services.kill(service)
    await asyncio.sleep(rnd.uniform(0.2, 2.0))
    p.services.start(service)


def test_kill_9_of_each_service_in_turn_loses_and_duplicates_nothing(private, topic_prefix, rnd):
    plan = scenario.at_load(private, topic_prefix)
    order = rnd.sample(SERVICES, len(SERVICES))

    async def inject(p):
        for service in order:  # spread over the first 3/4 of the load
            await asyncio.sleep(scenario.moment(plan, rnd, 0.05, 0.18))
            await _kill_and_restart(p, service, rnd)

    pipeline = scenario.pipeline("kill-each", private, topic_prefix, plan)
    findings = scenario.run(f"kill -9 of each service in turn ({', '.join(s.replace('-', '_') for s in order)})",
                            pipeline, inject)
    assert not findings, findings.text()


@pytest.mark.long
@pytest.mark.parametrize("service", SERVICES)
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(service, private, topic_prefix, rnd):
    plan = scenario.at_load(private, topic_prefix)

    async def inject(p):
        for _ in range(KILLS):  # spread over the first 3/4 of the load
            await asyncio.sleep(scenario.moment(plan, rnd, 0.05, 0.25))
            await _kill_and_restart(p, service, rnd)

    pipeline = scenario.pipeline(f"kill-{service}", private, topic_prefix, plan)
    findings = scenario.run(f"kill -9 {service.replace('-', '_')} x{KILLS}", pipeline, inject)
    assert not findings, findings.text()
