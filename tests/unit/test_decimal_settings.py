"""Decimal settings (SANDAN_TAX_TOLERANCE and the limits): a bad value stops the service with a
line naming the setting, rather than making every declaration fail a rule."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.common import config
from services.order_match.rules import RuleSettings


@pytest.mark.parametrize("raw, problem", [("abc", "is not a decimal number"), ("-1", "not negative"),
                                          ("-0.01", "not negative"), ("NaN", "finite"), ("Infinity", "finite")])
def test_a_bad_decimal_setting_is_refused_naming_it(monkeypatch, raw, problem):
    monkeypatch.setenv("SANDAN_TAX_TOLERANCE", raw)
    with pytest.raises(SystemExit, match=f"SANDAN_TAX_TOLERANCE={raw!r}.*{problem}"):
        RuleSettings.from_env()


def test_good_decimal_settings_are_read_exactly(monkeypatch):
    monkeypatch.setenv("SANDAN_TAX_TOLERANCE", " 0 ")
    monkeypatch.setenv("SANDAN_SINGLE_LIMIT", "5000.00000")
    assert RuleSettings.from_env().tax_tolerance == 0
    assert config.get_decimal("SANDAN_SINGLE_LIMIT") == Decimal(5000)
