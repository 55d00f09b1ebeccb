"""Account state and utilisation (DOMAIN §4): expiry follows the date in China time."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.tax_guarantee.account import (ACTIVE, CLOSED, EXPIRED, FROZEN, NOT_YET_VALID, china_date, days_left,
                                            parse_day, reaches, status, utilisation)

from .samples import account


def test_an_account_is_valid_through_its_last_day_and_expired_the_day_after():
    a = account(valid_from=date(2025, 1, 1), valid_to=date(2025, 6, 30))
    assert status(a, date(2025, 6, 30)) == ACTIVE
    assert status(a, date(2025, 7, 1)) == EXPIRED


def test_an_account_is_not_valid_before_its_first_day():
    a = account(valid_from=date(2025, 7, 1), valid_to=date(2025, 12, 31))
    assert status(a, date(2025, 6, 30)) == NOT_YET_VALID
    assert status(a, date(2025, 7, 1)) == ACTIVE


@pytest.mark.parametrize("state", [FROZEN, CLOSED])
def test_a_frozen_or_closed_account_stays_so_whatever_the_date(state):
    assert status(account(state=state), date(2025, 6, 15)) == state


def test_the_date_is_taken_in_china_time():
    # 2025-06-30 16:00 UTC is already 2025-07-01 00:00 in China.
    assert china_date(1751299200000) == date(2025, 7, 1)
    assert china_date(1751299200000 - 1000) == date(2025, 6, 30)


def test_days_left_counts_to_the_last_valid_day():
    a = account(valid_to=date(2025, 6, 30))
    assert days_left(a, date(2025, 6, 30)) == 0
    assert days_left(a, date(2025, 6, 1)) == 29
    assert days_left(a, date(2025, 7, 2)) == -2


def test_available_is_guaranteed_minus_outstanding():
    assert account(guaranteed="1000", outstanding="250.5").available == Decimal("749.5")


def test_utilisation_is_cut_not_rounded_up():
    assert utilisation(Decimal(3), Decimal(2)) == Decimal("66.66666")
    assert utilisation(Decimal(1000), Decimal("799.999999")) == Decimal("79.99999")
    assert utilisation(Decimal(0), Decimal(0)) == 0


def test_reaching_a_threshold_is_exact():
    assert reaches(Decimal(1000), Decimal(800), Decimal(80))
    assert not reaches(Decimal(1000), Decimal("799.99999"), Decimal(80))
    assert reaches(Decimal(3), Decimal(2), Decimal("66.66666"))


@pytest.mark.parametrize("text", ["2025-01-01", "20251301", "2025011", "", "abcdefgh"])
def test_a_day_is_yyyymmdd(text):
    with pytest.raises(ValueError):
        parse_day(text)
