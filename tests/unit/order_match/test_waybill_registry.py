"""The offline waybill registry answers each claim as of its own time (the inventory's appTime):
``sandan check`` claims in order of application, then decides, so a decision's claim may come
after a later orderNo's claim of a number whose first claim had run out."""
from __future__ import annotations

import asyncio

from services.order_match.waybills import MemoryWaybillRegistry

JAN, FEB, AUG = "20250101120000", "20250201120000", "20250801120000"


def claim(registry, order_no, app_time):
    return asyncio.run(registry.claim("3301980101", "SF0001", order_no, app_time))


def test_the_first_claim_holds_for_six_months_then_the_number_is_free():
    registry = MemoryWaybillRegistry()
    assert claim(registry, "A", JAN) is None
    assert claim(registry, "B", FEB) == "A"      # within six months: A holds it
    assert claim(registry, "C", AUG) is None     # A's claim ran out: C holds it from August
    assert claim(registry, "D", AUG) == "C"


def test_a_claim_is_answered_as_of_its_own_time():
    registry = MemoryWaybillRegistry()
    claim(registry, "A", JAN)
    claim(registry, "C", AUG)
    assert claim(registry, "A", JAN) is None     # A's decision after C's claim: A held it in January
    assert claim(registry, "B", FEB) == "A"      # and B's in February meets A, not C
    assert claim(registry, "C", AUG) is None
