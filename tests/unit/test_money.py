"""Exact money (services/common/money.py)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from services.common.money import AmountError, from_units, parse_amount, round_fen, to_units


@pytest.mark.parametrize("text,value", [("100", "100"), ("100.00000", "100"), (" 28.21 ", "28.21"), ("-1.5", "-1.5"),
                                        (".5", "0.5"), ("5.", "5"), ("+3", "3")])
def test_plain_decimals_parse(text, value):
    assert parse_amount(text) == Decimal(value)


@pytest.mark.parametrize("text", ["1e3", "NaN", "Infinity", "1,000", "12.3x", "", "-", ".", "１２", "0x10", "1.000001"])
def test_anything_but_a_plain_decimal_within_5_fraction_digits_is_refused(text):
    with pytest.raises(AmountError):
        parse_amount(text)


def test_total_digits_are_limited_to_19():
    assert parse_amount("12345678901234.12345") == Decimal("12345678901234.12345")
    with pytest.raises(AmountError):
        parse_amount("123456789012345.12345")


@given(st.decimals(min_value=Decimal("-1e13"), max_value=Decimal("1e13"), places=5, allow_nan=False))
def test_scaled_units_round_trip_exactly(value):
    assert from_units(to_units(value)) == value


def test_units_refuse_a_sixth_fraction_digit():
    with pytest.raises(AmountError):
        to_units(Decimal("0.000001"))


@pytest.mark.parametrize("value,fen", [("28.205", "28.21"), ("28.2049", "28.20"), ("-0.005", "-0.01"), ("0.004", "0.00")])
def test_round_fen_is_half_up(value, fen):
    assert str(round_fen(Decimal(value))) == fen
