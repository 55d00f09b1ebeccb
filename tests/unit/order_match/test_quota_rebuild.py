"""Rebuilding annual quotas from verdicts, refusals and the returns state (quota_rebuild.py).

The rebuild must land exactly where the live stores land: the last test drives the in-memory
twins of the Redis scripts with random histories and compares.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from services.order_match.quota import MemoryPartReleases, MemoryQuotaStore
from services.order_match.quota_rebuild import TOTAL, Difference, compare, rebuild

D = Decimal
YEAR = 2025


def verdict(decl: str, amount: str, buyer: str = "b1", status: str = "verified") -> dict:
    return {"declarationId": decl, "status": status, "buyerKey": buyer, "quotaYear": YEAR, "taxableValue": D(amount)}


def returns_bucket(decl: str, *, cancelled: bool = False, parts: tuple = ()) -> dict:
    """``parts``: (CEB625 guid, status, quota restored) per return request."""
    requests = [{"guid": g, "status": status, "quotaRestored": D(q)} for g, status, q in parts]
    return {"orderNo": decl.split(":")[1], "declarations": [
        {"declarationId": decl, "cancelledAt": 1 if cancelled else None, "requests": requests}]}


def test_each_verified_declaration_holds_its_taxable_value_once():
    rebuilt = rebuild([verdict("E:1", "310"), verdict("E:1", "310"), verdict("E:2", "90", buyer="b2"),
                       verdict("E:3", "50", status="rejected"), dict(verdict("E:4", "70"), buyerKey=None)], [], [])
    assert rebuilt.held == {("b1", YEAR): {"E:1": D("310")}, ("b2", YEAR): {"E:2": D("90")}}
    assert rebuilt.problems == []


def test_a_refusal_and_a_cancellation_give_everything_back():
    rebuilt = rebuild([verdict("E:1", "310"), verdict("E:2", "90"), verdict("E:3", "10")],
                      [dict(verdict("E:1", "310"), status="rejected")], [returns_bucket("E:2", cancelled=True)])
    assert rebuilt.held == {("b1", YEAR): {"E:3": D("10")}}


def test_completed_returns_give_back_their_parts_and_are_remembered_by_part_id():
    bucket = returns_bucket("E:1", parts=(("G1", "completed", "100.5"), ("G2", "waiting", "0"),
                                          ("G3", "refused", "0"), ("G4", "completed", "500")))
    rebuilt = rebuild([verdict("E:1", "310"), verdict("E:2", "20")], [], [bucket])
    assert rebuilt.held == {("b1", YEAR): {"E:2": D("20")}}  # the second part took only what was left
    assert rebuilt.parts == {"E:1": {"return:G1", "return:G4"}}


def test_a_quota_whose_declarations_all_went_back_is_not_listed():
    rebuilt = rebuild([verdict("E:1", "310")], [], [returns_bucket("E:1", cancelled=True)])
    assert rebuilt.held == {}


def test_the_same_declaration_verified_with_two_values_is_a_problem():
    assert rebuild([verdict("E:1", "310"), verdict("E:1", "311")], [], []).problems


def test_compare_names_each_difference_with_both_values():
    rebuilt = rebuild([verdict("E:1", "310"), verdict("E:2", "90"), verdict("E:9", "5", buyer="b9")], [], [])
    found = {("b1", YEAR): {"E:1": D("310"), "E:3": D("7"), TOTAL: D("400")},
             ("b2", YEAR): {TOTAL: D("0")}}
    assert compare(rebuilt, found) == [Difference("b1", YEAR, "E:2", "absent", "90"),
                                       Difference("b1", YEAR, "E:3", "7", "absent"),
                                       Difference("b9", YEAR, "hash", "missing", "1 declarations")]


def test_equal_hashes_compare_equal_whatever_the_decimal_scale():
    rebuilt = rebuild([verdict("E:1", "310.5")], [], [])
    assert compare(rebuilt, {("b1", YEAR): {"E:1": D("310.50000"), TOTAL: D("310.50000")}}) == []


def test_a_wrong_total_alone_is_a_difference():
    rebuilt = rebuild([verdict("E:1", "310")], [], [])
    assert compare(rebuilt, {("b1", YEAR): {"E:1": D("310"), TOTAL: D("620")}}) == [
        Difference("b1", YEAR, TOTAL, "620", "310")]


# One declaration's history: reserved, then refused, cancelled or returned in parts.
_histories = st.lists(st.tuples(
    st.sampled_from(["b1", "b2"]), st.integers(1, 500_000),
    st.one_of(st.just(("refused",)), st.just(("cancelled",)), st.just(("kept",)),
              st.lists(st.tuples(st.integers(0, 600_000), st.booleans()), max_size=3).map(lambda p: ("parts", p)))),
    max_size=12)


@settings(max_examples=150, deadline=None)
@given(_histories)
def test_the_rebuild_lands_where_the_live_stores_land(histories):
    verified, refused, buckets = [], [], []
    store = MemoryQuotaStore()
    parts_store = MemoryPartReleases(store)

    async def live():
        for n, (buyer, cents, fate) in enumerate(histories):
            decl, amount = f"E:{n}", D(cents).scaleb(-2)
            await store.reserve(decl, buyer, YEAR, amount, D("1e12"))
            verified.append(verdict(decl, str(amount), buyer))
            if fate[0] == "refused":
                await store.release(decl, buyer, YEAR)
                refused.append(verdict(decl, str(amount), buyer, status="rejected"))
            elif fate[0] == "cancelled":
                await store.release(decl, buyer, YEAR)
                buckets.append(returns_bucket(decl, cancelled=True))
            elif fate[0] == "parts":
                done = []
                for i, (part_cents, completed) in enumerate(fate[1]):
                    part = D(part_cents).scaleb(-2)
                    if completed:
                        await parts_store.release_part(decl, f"return:G{n}-{i}", buyer, YEAR, part)
                    done.append((f"G{n}-{i}", "completed" if completed else "refused", str(part)))
                buckets.append(returns_bucket(decl, parts=tuple(done)))

    asyncio.run(live())
    rebuilt = rebuild(verified, refused, buckets)
    for buyer in ("b1", "b2"):
        expected = sum(rebuilt.held.get((buyer, YEAR), {}).values(), D(0))
        assert asyncio.run(store.year_to_date(buyer, YEAR)) == expected
