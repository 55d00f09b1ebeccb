"""Quota given back in parts, once per part (services/common/quota/store.py, in-memory twin;
the Redis script is tested on the real Redis in tests/integration/test_returns_quota.py)."""
from __future__ import annotations

import asyncio
from decimal import Decimal

from services.common.quota.store import MemoryPartReleases, MemoryQuotaStore

D = Decimal


async def _scenario():
    store = MemoryQuotaStore()
    parts = MemoryPartReleases(store)
    await store.reserve("E:O1", "buyer", 2025, D("310.00"), D("26000"))
    given = [await parts.release_part("E:O1", "return:A", "buyer", 2025, D("103.33")),
             await parts.release_part("E:O1", "return:A", "buyer", 2025, D("103.33")),
             await parts.release_part("E:O1", "return:B", "buyer", 2025, D("500"))]
    return given, await store.year_to_date("buyer", 2025)


def test_a_part_is_given_back_once_and_never_more_than_is_held():
    given, left = asyncio.run(_scenario())
    assert given == [D("103.33"), None, D("206.67")]
    assert left == 0
