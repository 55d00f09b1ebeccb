"""The offline waybill registry answers each claim as of its own time (the inventory's appTime,
or its arrival where there is one), whatever order claims of different times come in; six
months are calendar months in China time."""
from __future__ import annotations

import asyncio

from services.common.clock import months_after, months_after_ms, parse_app_time
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


def test_six_months_are_calendar_months_in_china_time():
    # DOMAIN §2 WAYBILL_REUSED "within 6 months": 1 March 10:03 holds until 1 September 10:03
    # (184 days), 31 August until the end of February (181 days)
    registry = MemoryWaybillRegistry()
    assert claim(registry, "A", "20240301100300") is None
    assert claim(registry, "B", "20240831235959") == "A"   # 183 days on, still within six months
    assert claim(registry, "B", "20240901100259") == "A"
    assert claim(registry, "C", "20240901100300") is None  # six months to the second: free
    registry = MemoryWaybillRegistry()
    assert claim(registry, "A", "20250831120000") is None
    assert claim(registry, "B", "20260228115959") == "A"
    assert claim(registry, "C", "20260228120000") is None  # no 31 February: the month's last day


def test_an_arrival_time_counts_instead_of_the_app_time():
    # the stream's claims carry when the inventory reached Kafka: the sender's appTime does not count
    registry = MemoryWaybillRegistry()
    march = int(parse_app_time("20240301100300").timestamp() * 1000)
    september = int(parse_app_time("20240901100300").timestamp() * 1000)
    assert asyncio.run(registry.claim("3301980101", "SF0001", "A", "20200101000000", march)) is None
    assert asyncio.run(registry.claim("3301980101", "SF0001", "B", "20990101000000", september - 1)) == "A"
    assert asyncio.run(registry.claim("3301980101", "SF0001", "C", "20200101000000", september)) is None


def test_months_after_keeps_the_wall_clock_time_and_clamps_the_day():
    assert months_after(parse_app_time("20240831100300"), 6) == parse_app_time("20250228100300")
    assert months_after(parse_app_time("20230831100300"), 6) == parse_app_time("20240229100300")
    assert months_after(parse_app_time("20241215000000"), 6) == parse_app_time("20250615000000")
    assert months_after(parse_app_time("20240701000000"), 6) == parse_app_time("20250101000000")
    ms = int(parse_app_time("20240301100300").timestamp() * 1000) + 123
    assert months_after_ms(ms, 6) == int(parse_app_time("20240901100300").timestamp() * 1000) + 123
