"""Kafka and Redis taken away under load (issue 9, §1): Redis restarted (its append-only
file replayed), Redis wiped and rebuilt from Kafka, the Kafka broker stopped and restarted
while producers and workers run."""
from __future__ import annotations

import asyncio

import pytest

from tests.faults import scenario
from tests.faults.pipeline import WORKERS


@pytest.mark.parametrize("size", scenario.SIZES)
def test_redis_restarted_mid_load_replays_its_append_only_file(size, private, topic_prefix, rnd):
    plan = scenario.sized(size, private, topic_prefix)

    async def inject(p):
        for _ in range(2):
            await asyncio.sleep(scenario.moment(plan, rnd, 0.1, 0.35))
            p.faults.record("Redis stopped and restarted")
            await asyncio.to_thread(private.restart, "redis", rnd.uniform(0.5, 3.0))

    findings = scenario.run("Redis restart (AOF replay) x2",
                            scenario.pipeline("redis-restart", private, topic_prefix, plan), inject)
    assert not findings, findings.text()


@pytest.mark.parametrize("size", scenario.SIZES)
def test_redis_wiped_mid_load_is_rebuilt_from_the_ledger_and_the_verdicts(size, private, topic_prefix, rnd):
    """The drill for a lost Redis: stop the workers, rebuild balances from guarantee.ledger and
    quotas from the verdicts (`sandan guarantee|quota rebuild --repair`), start them again.
    The gateway keeps taking documents meanwhile; they wait on Kafka."""
    plan = scenario.sized(size, private, topic_prefix, **scenario.LONG_OUTAGE)

    async def inject(p):
        await asyncio.sleep(scenario.moment(plan, rnd, 0.2, 0.6))
        p.faults.record("Redis wiped")
        for name in WORKERS:
            p.services.stop(name)
        await asyncio.to_thread(private.wipe_redis)
        for args in (("guarantee", "rebuild", "--repair"), ("quota", "rebuild", "--repair")):
            code, out = await asyncio.to_thread(p.sandan, *args)
            assert code == 1 and "repaired" in out, out  # 1: there were differences, and they were repaired
        for name in WORKERS:
            p.services.start(name)

    findings = scenario.run("Redis wiped, rebuilt", scenario.pipeline("redis-wipe", private, topic_prefix, plan),
                            inject)
    assert not findings, findings.text()


def test_kafka_broker_restarted_mid_load_loses_nothing_acknowledged(private, topic_prefix, rnd):
    plan = scenario.at_load(private, topic_prefix, **scenario.LONG_OUTAGE)

    async def inject(p):
        await asyncio.sleep(scenario.moment(plan, rnd, 0.2, 0.6))
        p.faults.record("Kafka broker stopped and restarted")
        await asyncio.to_thread(private.restart, "kafka", rnd.uniform(1.0, 4.0))

    findings = scenario.run("Kafka broker restart", scenario.pipeline("kafka-restart", private, topic_prefix, plan),
                            inject)
    assert not findings, findings.text()
