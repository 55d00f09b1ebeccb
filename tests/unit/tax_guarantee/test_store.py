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


def test_an_outcome_keeps_the_wire_bytes_of_its_records_for_the_adapter():
    """Once stored, an applied outcome names each record's bytes, the very bytes the codec gives
    it, so the adapter sends them without encoding the records again. Read back, it names none:
    bytes written earlier may be of an earlier schema version, and only the current is written."""
    from services.common.avro import codec
    entry = history()[2]
    warnings = tuple(utilisation_warnings((Decimal(80),), account(outstanding="0"), account(outstanding="800.00001"),
                                          entry["entryId"], NOW_MS))
    outcome = Applied(entry, warnings)
    stored = dump_outcome(outcome)
    wire = codec()
    expected = {id(entry): wire.encode("sandan.LedgerEntry", entry),
                **{id(w): wire.encode("sandan.GuaranteeWarning", w) for w in warnings}}
    assert warnings and outcome.wire == expected
    again = load_outcome(stored)
    assert again == outcome and again.wire == {}
