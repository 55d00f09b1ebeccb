"""A decision replayed after its quota went back must not take the quota again
(services/common/quota/store.py; found by the fault suite: an order_match worker killed
before committing its input decides the declaration again after restart, by which time the
guarantee service may have refused it, or the buyer cancelled or returned it)."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from services.common.quota.store import RedisPartReleases, RedisQuotaStore, quota_key, released_field

pytestmark = pytest.mark.integration
LIMIT = Decimal(26000)


def test_a_released_reservation_is_not_taken_again_by_a_replay(stack, topic_prefix):
    namespace = f"sandan:{topic_prefix}replay-"

    async def scenario():
        client = aioredis.from_url(stack.redis_url)
        store, parts = RedisQuotaStore(client, namespace), RedisPartReleases(client, namespace, memory_s=60)
        try:
            await store.reserve("E:REFUSED", "buyer", 2025, Decimal("800"), LIMIT)
            await store.reserve("E:RETURNED", "buyer", 2025, Decimal("300"), LIMIT)
            await store.reserve("E:KEPT", "buyer", 2025, Decimal("100"), LIMIT)
            await store.release("E:REFUSED", "buyer", 2025)                                   # guarantee refusal
            await parts.release_part("E:RETURNED", "return:A", "buyer", 2025, Decimal("300"))  # full return
            replays = [await store.reserve(d, "buyer", 2025, amount, LIMIT)
                       for d, amount in (("E:REFUSED", Decimal("800")), ("E:RETURNED", Decimal("300")))]
            marks = await client.hgetall(quota_key(namespace, "buyer", 2025))
            return replays, await store.year_to_date("buyer", 2025), marks
        finally:
            await client.aclose()

    replays, left, marks = asyncio.run(scenario())
    assert replays == [(True, Decimal("100")), (True, Decimal("100"))]  # the verdict comes out as before
    assert left == Decimal("100")
    assert {released_field("E:REFUSED").encode(), released_field("E:RETURNED").encode()} <= set(marks)
