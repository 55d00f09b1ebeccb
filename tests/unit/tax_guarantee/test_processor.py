"""The engine with in-memory stores: each declaration and command is decided once, and a
redelivery re-emits exactly what the first delivery emitted."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.common.quota.store import MemoryQuotaStore
from services.common import codes
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.store import MemoryAccountStore

from .samples import CODE, NOW_MS, command_record, verdict

DAY_MS = 24 * 3600 * 1000
REGISTER = dict(kind="bank_guarantee", amount="100", validFrom="20250101", validTo="20251231")


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def engine():
    processor = GuaranteeProcessor(store=MemoryAccountStore(), quota=MemoryQuotaStore(),
                                   thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30)
    handled = run(processor.on_command(command_record("register", **REGISTER), NOW_MS))
    assert handled.rejected_input is None
    return processor


def topics_of(handled):
    return [o.topic for o in handled.outputs]


def balance(engine):
    return run(engine.store.account(CODE)).available


def test_register_writes_a_ledger_entry(engine):
    account = run(engine.store.account(CODE))
    assert (account.guaranteed, account.seq) == (100, 1)


def test_a_verified_declaration_is_deducted_and_cleared(engine):
    v = verdict("1", tax="30")
    handled = run(engine.on_verdict(v, NOW_MS))
    assert topics_of(handled) == ["guarantee.ledger", "declarations.cleared"]
    entry, cleared = (o.record for o in handled.outputs)
    assert (entry["action"], entry["amount"], entry["available"], entry["reference"]) == ("deduct", 30, 70, "EBP:O1")
    assert cleared == v
    assert balance(engine) == 70


def test_a_redelivered_declaration_is_deducted_once_and_re_emits_the_same_records(engine):
    first = run(engine.on_verdict(verdict("1", tax="30"), NOW_MS))
    again = run(engine.on_verdict(verdict("1", tax="30"), NOW_MS + 5000))
    assert again.replayed and not first.replayed
    assert again.outputs == first.outputs
    assert balance(engine) == 70


def test_a_declaration_the_balance_cannot_cover_is_refused_with_a_receipt_and_its_quota_released(engine):
    run(engine.quota.reserve("EBP:O2", "b" * 32, 2025, Decimal(1200), Decimal(26000)))
    handled = run(engine.on_verdict(verdict("2", tax="100.01"), NOW_MS))
    assert topics_of(handled) == ["declarations.refused", "receipts"]
    refused, rec = (o.record for o in handled.outputs)
    assert refused["status"] == "rejected"
    assert [f["code"] for f in refused["failures"]] == [codes.GUARANTEE_INSUFFICIENT]
    assert (rec["message"], rec["returnStatus"], rec["receiver"], rec["documentGuid"]) == (
        "CEB622", "100", "AGENT01", "GUID-2")
    assert rec["failures"][0]["code"] == codes.GUARANTEE_INSUFFICIENT
    assert run(engine.quota.year_to_date("b" * 32, 2025)) == 0
    assert balance(engine) == 100


def test_a_refusal_stays_a_refusal_when_redelivered_after_a_top_up(engine):
    first = run(engine.on_verdict(verdict("2", tax="150"), NOW_MS))
    run(engine.on_command(command_record("amend", commandId="top-up", amount=Decimal(1000)), NOW_MS))
    again = run(engine.on_verdict(verdict("2", tax="150"), NOW_MS + 60000))
    assert again.replayed and again.outputs == first.outputs
    assert run(engine.store.account(CODE)).outstanding == 0


@pytest.mark.parametrize("setup, code", [
    ([], codes.GUARANTEE_UNKNOWN),
    ([command_record("freeze")], codes.GUARANTEE_INACTIVE),
])
def test_unknown_and_frozen_accounts_refuse(engine, setup, code):
    for cmd in setup:
        run(engine.on_command(cmd, NOW_MS))
    v = verdict("3", tax="1", code="NOBODY" if not setup else CODE)
    refused = run(engine.on_verdict(v, NOW_MS)).outputs[0].record
    assert refused["failures"][0]["code"] == code


def test_an_expired_account_refuses_from_the_day_after_validto(engine):
    last_day = 1767110400000 + 12 * 3600 * 1000  # 2025-12-31 12:00 China time
    assert topics_of(run(engine.on_verdict(verdict("4", tax="1"), last_day)))[-1] == "declarations.cleared"
    refused = run(engine.on_verdict(verdict("5", tax="1"), last_day + DAY_MS)).outputs[0].record
    assert refused["failures"][0]["code"] == codes.GUARANTEE_INACTIVE


@pytest.mark.parametrize("change, code", [({"status": "rejected"}, codes.INVALID_FIELD),
                                          ({"taxTotal": Decimal(-1)}, codes.INVALID_AMOUNT)])
def test_a_verdict_that_is_not_a_verified_declaration_is_rejected_input(engine, change, code):
    handled = run(engine.on_verdict({**verdict("6"), **change}, NOW_MS))
    assert handled.outputs == [] and handled.rejected_input.code == code
    assert balance(engine) == 100


def test_a_refused_command_is_rejected_input_and_stays_refused_when_redelivered(engine):
    run(engine.on_verdict(verdict("1", tax="60"), NOW_MS))
    amend = command_record("amend", commandId="shrink", amount=Decimal(50))
    first = run(engine.on_command(amend, NOW_MS))
    assert first.outputs == [] and first.rejected_input.code == codes.BELOW_OUTSTANDING
    run(engine.on_command(command_record("void", commandId="v1", declarationId="EBP:O1", amount=Decimal(60)), NOW_MS))
    again = run(engine.on_command(amend, NOW_MS))
    assert again.replayed and again.rejected_input == first.rejected_input
    assert run(engine.store.account(CODE)).guaranteed == 100


def test_a_malformed_command_is_rejected_input(engine):
    handled = run(engine.on_command(command_record("amend", amount=Decimal(-5)), NOW_MS))
    assert handled.rejected_input.code == codes.INVALID_AMOUNT


def test_void_after_settlement_is_a_refund_and_settlement_restores_the_balance(engine):
    run(engine.on_verdict(verdict("1", tax="40"), NOW_MS))
    settle = run(engine.on_command(command_record("settle", commandId="s1", entDutyNo="N1", bills=["EBP:O1"]),
                                   NOW_MS))
    assert settle.outputs[0].record["available"] == 100
    void = run(engine.on_command(command_record("void", commandId="v1", declarationId="EBP:O1",
                                                amount=Decimal(40)), NOW_MS))
    assert void.rejected_input is None
    [entry] = [o.record for o in void.outputs if o.topic == "guarantee.ledger"]
    assert (entry["action"], entry["amount"], entry["declarationId"]) == ("refund", 40, "EBP:O1")
    assert balance(engine) == 100  # the payment restored it; the refund is customs' to pay back


def test_a_threshold_crossing_warns_once_and_a_redelivery_repeats_the_same_warning(engine):
    assert topics_of(run(engine.on_verdict(verdict("1", tax="79"), NOW_MS))) == ["guarantee.ledger",
                                                                                 "declarations.cleared"]
    crossing = run(engine.on_verdict(verdict("2", tax="2"), NOW_MS))
    assert topics_of(crossing) == ["guarantee.ledger", "guarantee.warnings", "declarations.cleared"]
    warning = crossing.outputs[1].record
    assert (warning["threshold"], warning["entryId"]) == (80, f"{CODE}/deduct/EBP:O2")
    assert "guarantee.warnings" not in topics_of(run(engine.on_verdict(verdict("3", tax="1"), NOW_MS)))
    assert run(engine.on_verdict(verdict("2", tax="2"), NOW_MS)).outputs[1] == crossing.outputs[1]


def test_expiry_warns_once_a_day(engine):
    near = 1765051200000  # 2025-12-07 China time: 24 days before validTo
    assert [o.record["daysLeft"] for o in run(engine.expiry_warnings(near))] == [24]
    assert run(engine.expiry_warnings(near + 3600 * 1000)) == []
    assert [o.record["daysLeft"] for o in run(engine.expiry_warnings(near + DAY_MS))] == [23]
    assert run(engine.expiry_warnings(NOW_MS)) == []  # June: far from the end


class RacingStore(MemoryAccountStore):
    """Lets another deduction commit between each decision and its commit, a few times."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.rival: GuaranteeProcessor | None = None

    async def commit(self, snapshot, outcome, change):
        if self.races and snapshot.key.startswith("deduct/EBP:OMINE"):
            self.races -= 1
            await self.rival.on_verdict(verdict(f"RIVAL{self.races}", tax="10"), NOW_MS)
        return await super().commit(snapshot, outcome, change)


def test_a_decision_made_on_a_stale_account_is_made_again():
    store = RacingStore(races=3)
    engine = GuaranteeProcessor(store=store, quota=None, thresholds=(), expiry_warn_days=30)
    store.rival = engine
    run(engine.on_command(command_record("register", **REGISTER), NOW_MS))
    handled = run(engine.on_verdict(verdict("MINE", tax="75"), NOW_MS))
    # Three rivals took 30 of the 100 while MINE was deciding: 75 no longer fits.
    assert handled.outputs[0].record["failures"][0]["code"] == codes.GUARANTEE_INSUFFICIENT
    assert run(store.account(CODE)).outstanding == 30


@pytest.mark.parametrize("kinds, field", [
    ({"valueAddedTax": Decimal("-92233720368547.75807"), "customsTax": Decimal("92233720368577.75807")}, "valueAddedTax"),
    ({"valueAddedTax": Decimal(20)}, "taxTotal"),  # 20 + 0 + 0 is not the 30 deducted
])
def test_a_verdict_whose_tax_kinds_are_negative_or_miss_the_total_is_refused_alone(engine, kinds, field):
    # found by tests/fuzz: such a verdict made the whole batch fail while encoding its tax bill
    bad = dict(verdict("9"), **kinds)
    handled = run(engine.on_verdicts([verdict("1", tax="10"), bad, verdict("2", tax="10")], NOW_MS))
    refused = handled[1].rejected_input
    assert (refused.code, refused.field) == (codes.INVALID_AMOUNT, field) and refused.message
    assert [topics_of(h)[-1] for h in (handled[0], handled[2])] == ["declarations.cleared"] * 2
    assert balance(engine) == 80


@pytest.mark.parametrize("change, field", [
    ({"taxableValue": Decimal(-1)}, "taxableValue"),
    ({"lines": [(1, "92233720368547.75807"), (2, "-0.01")]}, "inventory.lines[gnum 2].totalPrice"),
])
def test_a_verdict_with_a_negative_price_is_refused_alone(engine, change, field):
    # found by tests/fuzz (seed 2249728411): lines of opposite signs split P into shares past the
    # wire format's range, and the tax bill that could not be encoded failed the whole batch
    bad = verdict("9", tax="30")
    bad["invtNo"] = bad["inventory"]["invtNo"] = "INVT9"
    bad["inventory"]["lines"] = [{"gnum": g, "gcode": "0101010101", "totalPrice": Decimal(p)}
                                 for g, p in change.pop("lines", [(1, "300")])]
    bad.update(change)
    handled = run(engine.on_verdicts([verdict("1", tax="10"), bad, verdict("2", tax="10")], NOW_MS))
    refused = handled[1].rejected_input
    assert (refused.code, refused.field) == (codes.INVALID_AMOUNT, field) and "negative" in refused.message
    assert [topics_of(h)[-1] for h in (handled[0], handled[2])] == ["declarations.cleared"] * 2
    assert balance(engine) == 80
