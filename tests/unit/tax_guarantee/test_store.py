"""Recorded outcomes survive the trip through Redis bytes exactly."""
from __future__ import annotations

from decimal import Decimal

from services.tax_guarantee.alerts import utilisation_warnings
from services.tax_guarantee.commands import Refusal
from services.tax_guarantee.store import Applied, Refused, dump_outcome, load_outcome

from .samples import NOW_MS, account
from .test_ledger import history


def test_an_applied_outcome_round_trips_with_exact_amounts():
    entry = history()[2]
    warnings = tuple(utilisation_warnings((Decimal(80),), account(outstanding="0"), account(outstanding="800.00001"),
                                          entry["entryId"], NOW_MS))
    outcome = Applied(entry, warnings)
    assert load_outcome(dump_outcome(outcome)) == outcome


def test_a_refusal_round_trips():
    outcome = Refused(Refusal("GUARANTEE_INSUFFICIENT", "InventoryHead/assureCode", "短 of 1.00 CNY"), NOW_MS)
    assert load_outcome(dump_outcome(outcome)) == outcome
