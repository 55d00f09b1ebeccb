"""A ``sandan.GuaranteeCommand`` record checked field by field into a ``Command`` (no I/O).

Whether the command may change the account is ``rules``' business; here only its shape is
checked: the action is known and carries the fields it needs, amounts are positive and dates
are real dates. The same check runs in the command line before publishing and in the service
after consuming, so a malformed command is refused with the same answer in both places.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.common.money import ZERO
from services.common import codes
from services.tax_guarantee.account import KINDS, parse_day

ACCOUNT_ACTIONS = ("register", "amend", "extend", "freeze", "unfreeze", "close")
BILL_ACTIONS = ("void", "settle")
ACTIONS = ACCOUNT_ACTIONS + BILL_ACTIONS

# The fields each action cannot do without (amounts must also be positive).
REQUIRED = {"register": ("kind", "amount", "validFrom", "validTo"), "amend": ("amount",), "extend": ("validTo",),
            "void": ("declarationId", "amount"), "settle": ("bills", "entDutyNo")}


@dataclass(frozen=True)
class Refusal:
    code: str
    field: str
    message: str


@dataclass(frozen=True)
class Command:
    command_id: str
    action: str
    assure_code: str
    actor: str
    at: int
    kind: str | None = None
    amount: Decimal | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    declaration_id: str | None = None
    bills: tuple[str, ...] = ()
    ent_duty_no: str | None = None
    reason: str | None = None

    @property
    def bill_ids(self) -> tuple[str, ...]:
        """The tax bills the command touches (read with the account before deciding)."""
        return (self.declaration_id,) if self.action == "void" else self.bills


def _text(record: dict, name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    return value.strip() or None


def parse_command(record: dict) -> Command | Refusal:
    command_id, assure_code = _text(record, "commandId"), _text(record, "assureCode")
    action = (_text(record, "action") or "").lower()
    if not command_id:
        return Refusal(codes.INVALID_FIELD, "commandId", "a command needs a commandId (its idempotency key)")
    if not assure_code:
        return Refusal(codes.INVALID_FIELD, "assureCode", "a command needs the account's assureCode")
    if action not in ACTIONS:
        return Refusal(codes.UNKNOWN_ACTION, "action", f"unknown action {record.get('action')!r}; "
                                                       f"expected one of {', '.join(ACTIONS)}")
    bills = tuple(b.strip() for b in record.get("bills") or () if b and b.strip())
    fields = {"kind": _text(record, "kind"), "amount": record.get("amount"), "validFrom": _text(record, "validFrom"),
              "validTo": _text(record, "validTo"), "declarationId": _text(record, "declarationId"),
              "bills": bills, "entDutyNo": _text(record, "entDutyNo")}
    for name in REQUIRED.get(action, ()):
        if fields[name] is None or fields[name] == ():
            return Refusal(codes.INVALID_FIELD, name, f"{action} needs {name}")
    if action in ("register", "amend", "void") and fields["amount"] <= ZERO:
        return Refusal(codes.INVALID_AMOUNT, "amount", f"{action} needs a positive amount, got {fields['amount']}")
    if action == "register" and fields["kind"] not in KINDS:
        return Refusal(codes.INVALID_FIELD, "kind", f"kind {fields['kind']!r} is not one of {', '.join(KINDS)}")
    if len(set(bills)) != len(bills):
        return Refusal(codes.INVALID_FIELD, "bills", "a bill is named twice")
    days = {}
    for name in ("validFrom", "validTo"):
        if action in ("register", "extend") and fields[name] is not None:
            try:
                days[name] = parse_day(fields[name])
            except ValueError as exc:
                return Refusal(codes.INVALID_FIELD, name, str(exc))
    if "validFrom" in days and days["validFrom"] > days["validTo"]:
        return Refusal(codes.INVALID_FIELD, "validTo", "validTo is before validFrom")
    return Command(command_id=command_id, action=action, assure_code=assure_code,
                   actor=_text(record, "actor") or "unknown", at=record.get("at") or 0,
                   kind=fields["kind"], amount=fields["amount"], valid_from=days.get("validFrom"),
                   valid_to=days.get("validTo"), declaration_id=fields["declarationId"], bills=bills,
                   ent_duty_no=fields["entDutyNo"], reason=_text(record, "reason"))
