"""The shape of a guarantee command: checked before any rule looks at the account."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.common import codes
from services.tax_guarantee.commands import Command, Refusal, parse_command

from .samples import command_record

REGISTER = dict(kind="bank_guarantee", amount="1000", validFrom="20250101", validTo="20251231")


def test_a_register_command_is_read_with_its_dates_and_amount():
    cmd = parse_command(command_record("register", **REGISTER))
    assert isinstance(cmd, Command)
    assert (cmd.kind, cmd.amount, cmd.valid_from, cmd.valid_to) == (
        "bank_guarantee", Decimal(1000), date(2025, 1, 1), date(2025, 12, 31))


@pytest.mark.parametrize("field, value, code", [
    ("commandId", "", codes.INVALID_FIELD),
    ("assureCode", " ", codes.INVALID_FIELD),
    ("action", "delete", codes.UNKNOWN_ACTION),
    ("kind", "iou", codes.INVALID_FIELD),
    ("kind", None, codes.INVALID_FIELD),
    ("amount", None, codes.INVALID_FIELD),
    ("amount", "-1", codes.INVALID_AMOUNT),
    ("amount", "0", codes.INVALID_AMOUNT),
    ("validFrom", "2025-01-01", codes.INVALID_FIELD),
    ("validTo", "20250230", codes.INVALID_FIELD),
    ("validTo", "20241231", codes.INVALID_FIELD),  # before validFrom
])
def test_a_malformed_register_command_is_refused_naming_the_field(field, value, code):
    refusal = parse_command(command_record("register", **dict(REGISTER, **{field: value})))
    assert isinstance(refusal, Refusal)
    assert (refusal.code, refusal.field) == (code, field)


@pytest.mark.parametrize("action, fields, missing", [
    ("amend", {}, "amount"),
    ("extend", {}, "validTo"),
    ("void", {"amount": "5"}, "declarationId"),
    ("void", {"declarationId": "EBP:1"}, "amount"),
    ("settle", {"entDutyNo": "N1"}, "bills"),
    ("settle", {"bills": ["EBP:1"]}, "entDutyNo"),
])
def test_each_action_needs_its_fields(action, fields, missing):
    refusal = parse_command(command_record(action, **fields))
    assert isinstance(refusal, Refusal) and refusal.field == missing


def test_a_negative_amendment_or_void_is_refused():
    assert parse_command(command_record("amend", amount="-100")).code == codes.INVALID_AMOUNT
    assert parse_command(command_record("void", declarationId="EBP:1", amount="-1")).code == codes.INVALID_AMOUNT


def test_a_settlement_naming_a_bill_twice_is_refused():
    refusal = parse_command(command_record("settle", entDutyNo="N1", bills=["EBP:1", "EBP:2", "EBP:1"]))
    assert (refusal.code, refusal.field) == (codes.INVALID_FIELD, "bills")


def test_commands_without_fields_need_none():
    for action in ("freeze", "unfreeze", "close"):
        assert isinstance(parse_command(command_record(action)), Command)


def test_the_bills_a_command_touches():
    assert parse_command(command_record("void", declarationId="EBP:1", amount="5")).bill_ids == ("EBP:1",)
    assert parse_command(command_record("settle", entDutyNo="N", bills=["A", "B"])).bill_ids == ("A", "B")
    assert parse_command(command_record("freeze")).bill_ids == ()


def test_the_action_is_case_insensitive_and_text_is_trimmed():
    cmd = parse_command(command_record("FREEZE", assureCode=" X1 "))
    assert (cmd.action, cmd.assure_code) == ("freeze", "X1")
