"""Every rule of a guarantee account (DOMAIN §4 and the decisions in rules.py)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.common import codes
from services.tax_guarantee import rules
from services.tax_guarantee.account import ACTIVE, CLOSED, FROZEN
from services.tax_guarantee.commands import Refusal
from services.tax_guarantee.rules import Change

from .samples import CODE, TODAY, account, bill, command


def refused(result, code):
    assert isinstance(result, Refusal), result
    assert result.code == code, result
    return result


# register / amend / extend

def test_register_opens_an_active_account_with_nothing_outstanding():
    change = rules.apply(command("register", kind="cash_deposit", amount="5000", valid_from=date(2025, 1, 1),
                                 valid_to=date(2025, 12, 31)), None, {})
    assert isinstance(change, Change)
    a = change.account
    assert (a.kind, a.guaranteed, a.outstanding, a.state, a.seq) == ("cash_deposit", 5000, 0, ACTIVE, 1)
    assert (change.action, change.amount) == ("register", 5000)


def test_register_for_an_existing_account_is_refused():
    refused(rules.apply(command("register", kind="cash_deposit", amount="5", valid_from=TODAY, valid_to=TODAY),
                        account(), {}), codes.ACCOUNT_EXISTS)


@pytest.mark.parametrize("action, fields", [
    ("amend", {"amount": "10"}), ("extend", {"valid_to": date(2026, 1, 1)}), ("freeze", {}), ("unfreeze", {}),
    ("close", {}), ("void", {"declaration_id": "EBP:1", "amount": "1"}), ("settle", {"bills": ("EBP:1",),
                                                                                  "ent_duty_no": "N"}),
])
def test_any_command_for_an_unknown_account_is_refused(action, fields):
    refused(rules.apply(command(action, **fields), None, {}), codes.GUARANTEE_UNKNOWN)


@pytest.mark.parametrize("action, fields", [("amend", {"amount": "10"}), ("unfreeze", {}), ("close", {})])
def test_a_closed_account_takes_no_command(action, fields):
    refused(rules.apply(command(action, **fields), account(state=CLOSED), {}), codes.ACCOUNT_CLOSED)


def test_amend_sets_the_guaranteed_amount_and_advances_seq():
    change = rules.apply(command("amend", amount="2000"), account(guaranteed="1000", outstanding="300", seq=4), {})
    assert (change.account.guaranteed, change.account.available, change.account.seq) == (2000, 1700, 5)


def test_amend_below_the_outstanding_tax_is_refused_but_down_to_it_is_fine():
    a = account(guaranteed="1000", outstanding="300")
    refused(rules.apply(command("amend", amount="299.99"), a, {}), codes.BELOW_OUTSTANDING)
    assert rules.apply(command("amend", amount="300"), a, {}).account.available == 0


def test_extend_moves_validto_later_only():
    a = account(valid_to=date(2025, 12, 31))
    assert rules.apply(command("extend", valid_to=date(2026, 6, 30)), a, {}).account.valid_to == date(2026, 6, 30)
    refused(rules.apply(command("extend", valid_to=date(2025, 12, 31)), a, {}), codes.NOT_LATER)


# freeze / unfreeze / close

def test_freeze_and_unfreeze():
    frozen = rules.apply(command("freeze"), account(), {}).account
    assert frozen.state == FROZEN
    refused(rules.apply(command("freeze"), frozen, {}), codes.ALREADY_FROZEN)
    assert rules.apply(command("unfreeze"), frozen, {}).account.state == ACTIVE
    refused(rules.apply(command("unfreeze"), account(), {}), codes.NOT_FROZEN)


def test_close_only_without_outstanding_tax():
    refused(rules.apply(command("close"), account(outstanding="0.01"), {}), codes.OUTSTANDING_TAX)
    assert rules.apply(command("close"), account(), {}).account.state == CLOSED


# deduct

def test_a_deduction_takes_the_tax_and_opens_a_bill():
    change = rules.deduct(account(guaranteed="1000", outstanding="100", seq=7), "EBP:9", Decimal("28.21"), TODAY)
    assert (change.action, change.amount, change.reference) == ("deduct", Decimal("28.21"), "EBP:9")
    assert (change.account.outstanding, change.account.available, change.account.seq) == (
        Decimal("128.21"), Decimal("871.79"), 8)
    assert change.bills == (bill("EBP:9", deducted="28.21"),)


def test_a_deduction_may_use_the_balance_to_the_last_fen():
    assert isinstance(rules.deduct(account(guaranteed="100", outstanding="71.79"), "D", Decimal("28.21"), TODAY),
                      Change)
    refused(rules.deduct(account(guaranteed="100", outstanding="71.80"), "D", Decimal("28.21"), TODAY),
            codes.GUARANTEE_INSUFFICIENT)


def test_a_deduction_without_account_is_refused():
    assert "X9" in refused(rules.deduct(None, "D", Decimal(1), TODAY, "X9"), codes.GUARANTEE_UNKNOWN).message


@pytest.mark.parametrize("acct, today", [
    (account(state=FROZEN), TODAY),
    (account(state=CLOSED), TODAY),
    (account(valid_to=date(2025, 6, 14)), date(2025, 6, 15)),  # expired yesterday
    (account(valid_from=date(2025, 6, 16)), date(2025, 6, 15)),  # not valid yet
])
def test_a_deduction_from_an_inactive_account_is_refused(acct, today):
    refused(rules.deduct(acct, "D", Decimal(1), today), codes.GUARANTEE_INACTIVE)


def test_a_deduction_on_the_last_valid_day_is_taken():
    assert isinstance(rules.deduct(account(valid_to=TODAY), "D", Decimal(1), TODAY), Change)


# void

def test_a_partial_void_gives_back_that_amount():
    a = account(outstanding="100")
    change = rules.apply(command("void", declaration_id="EBP:1", amount="40"), a, {"EBP:1": bill(deducted="100")})
    assert (change.amount, change.account.outstanding) == (40, 60)
    assert change.bills == (bill(deducted="100", voided="40"),)


def test_a_void_never_gives_back_more_than_is_left_of_the_bill():
    a = account(outstanding="100")
    change = rules.apply(command("void", declaration_id="EBP:1", amount="80"), a,
                         {"EBP:1": bill(deducted="100", voided="30")})
    assert (change.amount, change.account.outstanding, change.bills[0].voided) == (70, 30, 100)


def test_a_fully_voided_bill_cannot_be_voided_again():
    refused(rules.apply(command("void", declaration_id="EBP:1", amount="1"), account(),
                        {"EBP:1": bill(deducted="100", voided="100")}), codes.BILL_FULLY_VOIDED)


def test_a_void_of_a_settled_bill_is_a_refund_that_leaves_the_balance_alone():
    change = rules.apply(command("void", declaration_id="EBP:1", amount="30"), account(outstanding="0"),
                         {"EBP:1": bill(settled_by="N1")})
    assert isinstance(change, Change) and change.action == "refund"
    assert change.amount == Decimal("30") and change.account.outstanding == 0
    assert change.bills[0].refunded == Decimal("30") and change.bills[0].remaining == 0


def test_a_refund_is_capped_at_what_was_paid_and_a_second_full_one_is_refused():
    settled = bill(settled_by="N1")
    change = rules.apply(command("void", declaration_id="EBP:1", amount="1000000"), account(outstanding="0"),
                         {"EBP:1": settled})
    assert change.amount == settled.deducted
    refused(rules.apply(command("void", declaration_id="EBP:1", amount="1"), account(outstanding="0"),
                        {"EBP:1": change.bills[0]}), codes.BILL_FULLY_VOIDED)


def test_a_void_of_a_bill_never_deducted_is_refused():
    refused(rules.apply(command("void", declaration_id="EBP:1", amount="1"), account(), {}), codes.BILL_UNKNOWN)


def test_void_and_settle_work_on_a_frozen_account():
    a = account(state=FROZEN, outstanding="100")
    assert isinstance(rules.apply(command("void", declaration_id="EBP:1", amount="1"), a, {"EBP:1": bill()}), Change)
    assert isinstance(rules.apply(command("settle", bills=("EBP:1",), ent_duty_no="N"), a, {"EBP:1": bill()}), Change)


# settle

def test_a_settlement_gives_back_every_bill_it_names():
    a = account(outstanding="300")
    bills = {"A": bill("A", "100"), "B": bill("B", "150.5")}
    change = rules.apply(command("settle", bills=("A", "B"), ent_duty_no="N1"), a, bills)
    assert (change.amount, change.account.outstanding, change.reference) == (Decimal("250.5"), Decimal("49.5"), "N1")
    assert {b.declaration_id: b.settled_by for b in change.bills} == {"A": "N1", "B": "N1"}


def test_a_bill_is_settled_once():
    refused(rules.apply(command("settle", bills=("A",), ent_duty_no="N2"), account(),
                        {"A": bill("A", settled_by="N1")}), codes.BILL_SETTLED)


def test_a_bill_voided_in_full_is_never_settled():
    refused(rules.apply(command("settle", bills=("A",), ent_duty_no="N1"), account(outstanding="0"),
                        {"A": bill("A", "100", voided="100")}), codes.BILL_VOIDED)


def test_a_partly_voided_bill_is_settled_for_what_it_still_owes():
    # DOMAIN §4/§5: a partial return before payment voids part of the bill; customs aggregates the
    # rest from day 31 and the paid amount returns to the balance
    change = rules.apply(command("settle", bills=("A", "B"), ent_duty_no="N1"), account(outstanding="118.81"),
                         {"A": bill("A", "28.21", voided="9.40"), "B": bill("B", "100")})
    assert (change.amount, change.account.outstanding) == (Decimal("118.81"), Decimal(0))
    assert {b.declaration_id: (b.settled_by, b.remaining) for b in change.bills} == {"A": ("N1", 0), "B": ("N1", 0)}
    # a return completed after payment refunds at most what was paid (28.21 - 9.40)
    refund = rules.apply(command("void", declaration_id="A", amount=Decimal("50")), change.account,
                         {"A": change.bills[0]})
    assert (refund.action, refund.amount, refund.account.outstanding) == ("refund", Decimal("18.81"), Decimal(0))


def test_a_settlement_is_all_or_nothing():
    bills = {"A": bill("A", "100")}  # B was never deducted
    result = refused(rules.apply(command("settle", bills=("A", "B"), ent_duty_no="N1"), account(outstanding="100"),
                                 bills), codes.BILL_UNKNOWN)
    assert "B" in result.message


def test_the_unknown_account_message_names_the_code():
    assert CODE in rules.apply(command("freeze"), None, {}).message
