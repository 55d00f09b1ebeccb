"""rebuild's comparison: every difference between Redis and the ledger is named."""
from __future__ import annotations

import dataclasses
from decimal import Decimal

from services.tax_guarantee import ledger
from services.tax_guarantee.reconcile import compare, unknown_to_ledger

from .samples import CODE, bill
from .test_ledger import history


def rebuilt():
    return ledger.replay(history())[CODE]


def redis_side(r):
    return r.account, dict(r.bills), {e["entryId"] for e in r.entries}


def test_no_difference_when_redis_holds_what_the_ledger_says():
    r = rebuilt()
    found = compare(r, *redis_side(r))
    assert (found.differences, found.stray_bills, found.missing_entries) == ([], set(), [])


def test_a_wiped_account_is_missing_with_all_its_bills_and_records():
    r = rebuilt()
    found = compare(r, None, {}, set())
    assert [d.subject for d in found.differences] == ["account", "bills", "idempotency records"]
    assert len(found.missing_entries) == len(r.entries)


def test_a_changed_balance_is_reported_with_both_values():
    r = rebuilt()
    account, bills, recorded = redis_side(r)
    found = compare(r, dataclasses.replace(account, outstanding=Decimal("1.5")), bills, recorded)
    [diff] = found.differences
    assert (diff.subject, Decimal(diff.redis), Decimal(diff.ledger)) == ("outstanding", Decimal("1.5"),
                                                                          Decimal("60.5"))


def test_bills_that_differ_or_are_not_in_the_ledger_are_reported():
    r = rebuilt()
    account, bills, recorded = redis_side(r)
    bills["E:3"] = bill("E:3", "20", voided="5")
    bills["E:99"] = bill("E:99")
    found = compare(r, account, bills, recorded)
    assert [d.subject for d in found.differences] == ["bills"]
    assert "1 differ" in found.differences[0].redis and found.stray_bills == {"E:99"}


def test_accounts_unknown_to_the_ledger_are_reported():
    assert [d.assure_code for d in unknown_to_ledger({CODE, "OTHER"}, {CODE: rebuilt()})] == ["OTHER"]
