"""Utilisation thresholds warn once per upward crossing and re-arm; expiry warns ahead."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.tax_guarantee.account import CLOSED, FROZEN
from services.tax_guarantee.alerts import crossed, expiry_warning, parse_thresholds, utilisation_warnings

from .samples import NOW_MS, account

T = (Decimal(80), Decimal(95))


def walk(outstandings, guaranteed="1000"):
    """The thresholds crossed at each step of a sequence of outstanding amounts."""
    steps, before = [], None
    for value in outstandings:
        after = account(guaranteed=guaranteed, outstanding=str(value))
        steps.append(crossed(T, before, after))
        before = after
    return steps


def test_a_threshold_warns_once_when_crossed_upwards():
    assert walk([0, 500, 799, 800, 850, 900]) == [[], [], [], [Decimal(80)], [], []]


def test_a_threshold_re_arms_when_utilisation_falls_below_it():
    assert walk([0, 800, 700, 850, 810]) == [[], [Decimal(80)], [], [Decimal(80)], []]


def test_one_jump_can_cross_several_thresholds():
    assert walk([0, 960]) == [[], [Decimal(80), Decimal(95)]]


def test_lowering_the_guaranteed_amount_can_cross_a_threshold():
    before = account(guaranteed="1000", outstanding="700")
    after = account(guaranteed="800", outstanding="700")
    assert crossed(T, before, after) == [Decimal(80)]


def test_warning_records_name_the_entry_and_threshold():
    before, after = account(outstanding="790"), account(outstanding="960")
    warnings = utilisation_warnings(T, before, after, "X/deduct/D1", NOW_MS)
    assert [w["warningId"] for w in warnings] == ["X/deduct/D1/utilisation/80", "X/deduct/D1/utilisation/95"]
    assert warnings[0]["utilisation"] == Decimal(96) and warnings[0]["available"] == Decimal(40)


@pytest.mark.parametrize("text, expected", [("80,95", T), ("95, 80", T), ("50", (Decimal(50),)),
                                            ("87.5,100", (Decimal("87.5"), Decimal(100)))])
def test_thresholds_setting(text, expected):
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize("text", ["0,80", "101", "eighty"])
def test_bad_thresholds_are_refused(text):
    with pytest.raises(ValueError):
        parse_thresholds(text)


def test_expiry_warns_within_the_window_through_the_last_day():
    a = account(valid_to=date(2025, 7, 15))
    assert expiry_warning(a, date(2025, 6, 14), 30, NOW_MS) is None          # 31 days left
    warning = expiry_warning(a, date(2025, 6, 15), 30, NOW_MS)                # 30 days left
    assert (warning["daysLeft"], warning["warningId"]) == (30, f"{a.assure_code}/expiry/20250615")
    assert expiry_warning(a, date(2025, 7, 15), 30, NOW_MS)["daysLeft"] == 0
    assert expiry_warning(a, date(2025, 7, 16), 30, NOW_MS) is None          # expired: nothing ahead


def test_expiry_warns_for_frozen_accounts_but_not_closed_ones():
    assert expiry_warning(account(state=FROZEN, valid_to=date(2025, 6, 20)), date(2025, 6, 15), 30, NOW_MS)
    assert expiry_warning(account(state=CLOSED, valid_to=date(2025, 6, 20)), date(2025, 6, 15), 30, NOW_MS) is None
