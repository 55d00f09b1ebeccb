"""The annual quota in the real Redis: atomic across concurrent workers, idempotent per declaration."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from services.order_match.quota import RedisQuotaStore

pytestmark = pytest.mark.integration
LIMIT = Decimal(26000)


async def _store(stack, prefix):
    client = aioredis.from_url(stack.redis_url)
    return client, RedisQuotaStore(client, f"sandan:{prefix}q-")


def test_concurrent_reservations_never_pass_the_limit_and_count_once(stack, topic_prefix):
    async def scenario():
        client, store = await _store(stack, topic_prefix)
        try:
            # 60 declarations of 1,000 from 60 concurrent tasks, each delivered twice: 26 fit.
            attempts = [store.reserve(f"E:O{i}", "buyerA", 2025, Decimal(1000), LIMIT) for i in range(60)] * 2
            results = await asyncio.gather(*attempts)
            granted = {f"E:O{i}" for i, (ok, _) in enumerate(results[:60]) if ok}
            assert len(granted) == 26
            # a redelivery answers like the first delivery did
            assert [ok for ok, _ in results[60:]] == [ok for ok, _ in results[:60]]
            assert await store.year_to_date("buyerA", 2025) == Decimal(26000)
        finally:
            await client.aclose()
    asyncio.run(scenario())


def test_exactly_the_limit_passes_and_one_fen_more_does_not(stack, topic_prefix):
    async def scenario():
        client, store = await _store(stack, topic_prefix)
        try:
            assert (await store.reserve("E:A", "buyerB", 2025, Decimal("25999.99"), LIMIT))[0]
            assert not (await store.reserve("E:B", "buyerB", 2025, Decimal("0.02"), LIMIT))[0]
            assert (await store.reserve("E:C", "buyerB", 2025, Decimal("0.01"), LIMIT))[0]
            assert await store.year_to_date("buyerB", 2025) == LIMIT
            assert await store.year_to_date("buyerB", 2026) == 0  # a new year starts empty
        finally:
            await client.aclose()
    asyncio.run(scenario())


def test_release_gives_back_what_was_reserved_once(stack, topic_prefix):
    async def scenario():
        client, store = await _store(stack, topic_prefix)
        try:
            await store.reserve("E:R", "buyerC", 2025, Decimal("800"), LIMIT)
            assert await store.release("E:R", "buyerC", 2025, Decimal("300")) == Decimal("300")
            assert await store.year_to_date("buyerC", 2025) == Decimal("500")
            assert await store.release("E:R", "buyerC", 2025) == Decimal("500")
            assert await store.release("E:R", "buyerC", 2025) == 0
            assert await store.year_to_date("buyerC", 2025) == 0
        finally:
            await client.aclose()
    asyncio.run(scenario())
