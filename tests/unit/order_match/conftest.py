"""Fixtures of the order_match unit tests; the documents themselves are in ``samples``."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.common.rates import load_rates
from services.order_match.rules import RuleSettings

from .samples import base_documents


@pytest.fixture(scope="session")
def rates():
    return load_rates()


@pytest.fixture
def docs() -> dict:
    return base_documents()


@pytest.fixture
def settings() -> RuleSettings:
    return RuleSettings(tax_tolerance=Decimal("0.05"), single_limit=Decimal("5000"), annual_limit=Decimal("26000"))

