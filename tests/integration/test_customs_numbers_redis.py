"""Customs numbers in the real Redis: unique across concurrent workers, the same for a
declaration numbered again, and the same answers as the in-memory twin."""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.common.clock import parse_app_time
from services.common.customs_numbers import MemoryCustomsNumbers, NumberRequest, RedisCustomsNumbers

pytestmark = pytest.mark.integration
MAR_3 = int(parse_app_time("20250303150000").timestamp() * 1000)


def test_concurrent_workers_never_share_a_number_and_a_replay_keeps_its_own(stack, topic_prefix):
    async def scenario():
        clients = [aioredis.from_url(stack.redis_url) for _ in range(2)]
        try:
            stores = [RedisCustomsNumbers(c, f"sandan:{topic_prefix}n-") for c in clients]
            # two workers, 40 batches of 10 declarations each, every declaration numbered by both
            batches = [[NumberRequest(f"E:O{b}-{i}", MAR_3, verify=i % 2 == 0, customs_code="2991", cop_no=f"C{i}")
                        for i in range(10)] for b in range(40)]
            answers = await asyncio.gather(*(stores[n % 2].number_many(batch)
                                             for n, batch in enumerate(batches + batches[::-1])))
            first, second = answers[:40], answers[40:][::-1]
            assert first == second  # whoever numbered it first, both got the same numbers
            numbers = [a for batch in first for a in batch]
            pre = [a.pre_no for a in numbers]
            invt = [a.invt_no for a in numbers if a.invt_no]
            assert len(set(pre)) == 400 and len(set(invt)) == 200
            assert sorted(pre) == [f"B20250303{n:09d}" for n in range(1, 401)]
            assert sorted(invt) == [f"29912025I{n:09d}" for n in range(1, 201)]
            # verified later: the preNo stays, an invtNo is added once
            [later] = await stores[1].number_many([NumberRequest("E:O0-1", MAR_3 + 86_400_000, verify=True,
                                                                 customs_code="2991")])
            assert later.pre_no == first[0][1].pre_no and later.invt_no == "29912025I000000201"
            assert later.cop_no == "C1"
        finally:
            for c in clients:
                await c.aclose()
    asyncio.run(scenario())


def test_redis_and_memory_number_alike(stack, topic_prefix):
    requests = [NumberRequest("E:A", MAR_3), NumberRequest("E:B", MAR_3, verify=True, customs_code="5141"),
                NumberRequest("E:A", MAR_3, verify=True, customs_code="5141"), NumberRequest("E:B", MAR_3)]

    async def scenario():
        client = aioredis.from_url(stack.redis_url)
        try:
            redis_answers = await RedisCustomsNumbers(client, f"sandan:{topic_prefix}m-").number_many(requests)
        finally:
            await client.aclose()
        assert redis_answers == await MemoryCustomsNumbers().number_many(requests)
    asyncio.run(scenario())
