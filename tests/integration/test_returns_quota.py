"""Quota given back in parts on the real Redis (services/common/quota/store.py RedisPartReleases):
each part once, even when released concurrently and repeatedly, never more than was reserved."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from services.common.quota.store import RedisPartReleases, RedisQuotaStore, parts_key

pytestmark = pytest.mark.integration
D = Decimal


def test_each_part_is_given_back_once_and_never_more_than_was_reserved(stack, topic_prefix):
    namespace = f"sandan:{topic_prefix}rq-"

    async def scenario():
        client = aioredis.from_url(stack.redis_url)
        store, parts = RedisQuotaStore(client, namespace), RedisPartReleases(client, namespace, memory_s=60)
        try:
            await store.reserve("E:O1", "buyer", 2025, D("310.00"), D(26000))
            await store.reserve("E:O2", "buyer", 2025, D("100.00"), D(26000))
            # the same part released by four concurrent redeliveries: given back once
            given = await asyncio.gather(*[parts.release_part("E:O1", "return:A", "buyer", 2025, D("103.33"))
                                           for _ in range(4)])
            assert sorted(given, key=lambda g: g is None) == [D("103.33"), None, None, None]
            # a last part larger than what is left gives back only what is left
            assert await parts.release_part("E:O1", "return:B", "buyer", 2025, D("999")) == D("206.67")
            assert await parts.release_part("E:O1", "return:C", "buyer", 2025, D("1")) == D(0)
            assert await store.year_to_date("buyer", 2025) == D("100.00")  # only the other declaration
            assert await client.ttl(parts_key(namespace, "E:O1")) > 0
        finally:
            await client.aclose()
    asyncio.run(scenario())
