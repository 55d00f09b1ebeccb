"""The annual quota in the real Redis: atomic across concurrent workers, idempotent per declaration."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from services.common.clock import months_after_ms, now_ms
from services.common.quota.store import Lookup, MemoryQuotaStore, RedisQuotaStore, Reservation
from services.order_match.waybills import MemoryWaybillRegistry, RedisWaybillRegistry

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


def test_a_batch_of_steps_in_one_round_trip_answers_as_the_steps_one_by_one(stack, topic_prefix):
    """order_match decides a batch of declarations with one pipeline (``run``): the answers
    and the totals must be those of taking each step alone, in order."""
    steps = [Reservation("E:P1", "buyerD", 2025, Decimal("20000"), LIMIT),
             Lookup("buyerD", 2025),
             Reservation("E:P2", "buyerD", 2025, Decimal("6000.01"), LIMIT),  # one fen too many
             Reservation("E:P3", "buyerD", 2025, Decimal("6000"), LIMIT),     # exactly the limit
             Reservation("E:P1", "buyerD", 2025, Decimal("20000"), LIMIT),    # redelivered: counted once
             Lookup("buyerD", 2026)]

    async def scenario():
        client, store = await _store(stack, topic_prefix)
        try:
            batched = await store.run(steps)
        finally:
            await client.aclose()
        one_by_one = await MemoryQuotaStore().run(steps)
        return batched, one_by_one

    batched, one_by_one = asyncio.run(scenario())
    assert batched == one_by_one == [(True, Decimal(20000)), Decimal(20000), (False, Decimal(20000)),
                                     (True, LIMIT), (True, LIMIT), Decimal(0)]


def test_waybill_claims_in_one_round_trip_answer_as_one_by_one(stack, topic_prefix):
    t = "20250303101010"
    claims = [("CARRIER", "W1", "O1", t, None), ("CARRIER", "W1", "O2", t, None), ("CARRIER", "W1", "O1", t, None),
              ("CARRIER", "W2", "O2", t, None), ("OTHER", "W1", "O3", t, None)]

    async def scenario():
        client = aioredis.from_url(stack.redis_url)
        try:
            return await RedisWaybillRegistry(client, f"sandan:{topic_prefix}w-").claim_many(claims)
        finally:
            await client.aclose()

    one_by_one = asyncio.run(MemoryWaybillRegistry().claim_many(claims))
    assert asyncio.run(scenario()) == one_by_one == [None, "O1", None, None, None]
    assert asyncio.run(scenario()) == one_by_one  # claimed again: the same answers


def test_a_waybill_claim_holds_six_calendar_months_from_its_arrival(stack, topic_prefix):
    now = now_ms()
    old = months_after_ms(now, -6) - 1000  # arrived six months and a second ago

    async def scenario():
        client = aioredis.from_url(stack.redis_url)
        registry = RedisWaybillRegistry(client, f"sandan:{topic_prefix}w6-")
        try:
            fresh = await registry.claim_many([("CARRIER", "W6", "O1", "", now), ("CARRIER", "W6", "O2", "", now)])
            expires = await client.pexpiretime(f"sandan:{topic_prefix}w6-waybill:CARRIER:W6")
            stale = await registry.claim_many([("CARRIER", "W7", "O1", "", old), ("CARRIER", "W7", "O2", "", now)])
            return fresh, expires, stale
        finally:
            await client.aclose()

    fresh, expires, stale = asyncio.run(scenario())
    assert fresh == [None, "O1"]
    assert expires == months_after_ms(now, 6)  # calendar months on from the arrival, to the millisecond
    assert stale == [None, None]  # the old claim ran out as it was made: O2 holds W7 now
