"""Every rule of a guarantee account (DOMAIN §4): what a deduction or a command may change.

Each function takes the account as it is (``None`` when the assureCode has none), the bills
involved (and, for a deduction, today's date in China time), and returns either the ``Change`` to write or the
``Refusal`` to answer with. Nothing here reads or writes anything; the store applies a
change atomically and only if the account did not change in between.

Decisions the public rules leave open (README "Rules"):
- a void restores at most what is left of its bill: a larger amount (pro-rata rounding in
  the returns service) is cut to the remainder, and a bill with nothing left is refused;
- a settlement is all or nothing: if one named bill is unknown, settled already or voided
  (even partly: customs' notice then no longer matches the bill) the whole notice is refused;
- void and settle work on frozen and expired accounts too (they only give balance back);
- an account closes only when no tax is outstanding on it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from services.common.money import ZERO, fen_str
from services.common import codes
from services.tax_guarantee.account import ACTIVE, CLOSED, FROZEN, Account, Bill, day_text, status
from services.tax_guarantee.commands import Command, Refusal

ASSURE_FIELD = "InventoryHead/assureCode"


@dataclass(frozen=True)
class Change:
    action: str
    amount: Decimal               # what the action moved (deduct/void/settle) or asked (register/amend)
    account: Account              # the account after the change (seq already advanced)
    bills: tuple[Bill, ...] = ()  # bills created or updated by the change
    reference: str = ""           # declarationId, entDutyNo or commandId


def deduct(account: Account | None, declaration_id: str, tax: Decimal, today: date,
           assure_code: str = "") -> Change | Refusal:
    """Take one verified declaration's tax from its guarantee (the bill is new: idempotency is the store's)."""
    if account is None:
        return Refusal(codes.GUARANTEE_UNKNOWN, ASSURE_FIELD,
                       f"no tax guarantee account for assureCode {assure_code or '(none)'}")
    state = status(account, today)
    if state != ACTIVE:
        return Refusal(codes.GUARANTEE_INACTIVE, ASSURE_FIELD,
                       f"the tax guarantee of {account.assure_code} is {state} (valid "
                       f"{day_text(account.valid_from)} to {day_text(account.valid_to)})")
    if account.available < tax:
        return Refusal(codes.GUARANTEE_INSUFFICIENT, ASSURE_FIELD,
                       f"the tax guarantee of {account.assure_code} has {fen_str(account.available)} CNY available,"
                       f" the tax is {fen_str(tax)} CNY")
    return Change("deduct", tax, account.changed(outstanding=account.outstanding + tax),
                  (Bill(declaration_id, tax),), declaration_id)


def apply(command: Command, account: Account | None, bills: Mapping[str, Bill]) -> Change | Refusal:
    """The change one (well-formed, see ``commands.parse_command``) command makes."""
    if command.action == "register":
        return _register(command, account)
    if account is None:
        return Refusal(codes.GUARANTEE_UNKNOWN, "assureCode", f"no tax guarantee account for {command.assure_code}")
    if account.state == CLOSED:
        return Refusal(codes.ACCOUNT_CLOSED, "assureCode", f"the account of {account.assure_code} is closed")
    return _APPLY[command.action](command, account, bills)


def _register(command: Command, account: Account | None) -> Change | Refusal:
    if account is not None:
        return Refusal(codes.ACCOUNT_EXISTS, "assureCode",
                       f"{command.assure_code} already has a {account.kind} account (amend or extend it instead)")
    created = Account(command.assure_code, command.kind, command.amount, ZERO, ACTIVE, command.valid_from,
                      command.valid_to, seq=1)
    return Change("register", command.amount, created, reference=command.command_id)


def _amend(command: Command, account: Account, bills) -> Change | Refusal:
    if command.amount < account.outstanding:
        return Refusal(codes.BELOW_OUTSTANDING, "amount",
                       f"{fen_str(command.amount)} CNY is below the {fen_str(account.outstanding)} CNY of tax"
                       f" outstanding on {account.assure_code}")
    return Change("amend", command.amount, account.changed(guaranteed=command.amount), reference=command.command_id)


def _extend(command: Command, account: Account, bills) -> Change | Refusal:
    if command.valid_to <= account.valid_to:
        return Refusal(codes.NOT_LATER, "validTo", f"{day_text(command.valid_to)} is not after the current validTo"
                                                   f" {day_text(account.valid_to)}")
    return Change("extend", ZERO, account.changed(valid_to=command.valid_to), reference=command.command_id)


def _freeze(command: Command, account: Account, bills) -> Change | Refusal:
    if account.state == FROZEN:
        return Refusal(codes.ALREADY_FROZEN, "action", f"the account of {account.assure_code} is frozen already")
    return Change("freeze", ZERO, account.changed(state=FROZEN), reference=command.command_id)


def _unfreeze(command: Command, account: Account, bills) -> Change | Refusal:
    if account.state != FROZEN:
        return Refusal(codes.NOT_FROZEN, "action", f"the account of {account.assure_code} is not frozen")
    return Change("unfreeze", ZERO, account.changed(state=ACTIVE), reference=command.command_id)


def _close(command: Command, account: Account, bills) -> Change | Refusal:
    if account.outstanding > ZERO:
        return Refusal(codes.OUTSTANDING_TAX, "assureCode",
                       f"{fen_str(account.outstanding)} CNY of tax is still outstanding on {account.assure_code}")
    return Change("close", ZERO, account.changed(state=CLOSED), reference=command.command_id)


def _void(command: Command, account: Account, bills: Mapping[str, Bill]) -> Change | Refusal:
    decl = command.declaration_id
    bill = bills.get(decl)
    if bill is None:
        return Refusal(codes.BILL_UNKNOWN, "declarationId", f"no tax of {decl} was deducted from {account.assure_code}")
    if bill.settled_by:
        return _refund(command, account, bill)
    if bill.remaining <= ZERO:
        return Refusal(codes.BILL_FULLY_VOIDED, "declarationId", f"the tax bill of {decl} is voided in full already")
    restored = min(command.amount, bill.remaining)
    return Change("void", restored, account.changed(outstanding=account.outstanding - restored),
                  (replace(bill, voided=bill.voided + restored),), decl)


def _refund(command: Command, account: Account, bill: Bill) -> Change | Refusal:
    """A void of a bill the enterprise has paid already (a return completed after settlement,
    which customs allows until day 45 while bills are settled from day 31): the balance is not
    touched, since the payment restored it; the tax becomes a refund customs owes."""
    refundable = bill.deducted - bill.voided - bill.refunded  # what the payment covered
    if refundable <= ZERO:
        return Refusal(codes.BILL_FULLY_VOIDED, "declarationId",
                       f"the tax bill of {bill.declaration_id} (settled by {bill.settled_by}) is refunded in full already")
    refunded = min(command.amount, refundable)
    return Change("refund", refunded, account.changed(), (replace(bill, refunded=bill.refunded + refunded),),
                  bill.declaration_id)


def _settle(command: Command, account: Account, bills: Mapping[str, Bill]) -> Change | Refusal:
    settled = []
    for decl in command.bills:
        bill = bills.get(decl)
        if bill is None:
            return Refusal(codes.BILL_UNKNOWN, "bills", f"no tax of {decl} was deducted from {account.assure_code}")
        if bill.settled_by:
            return Refusal(codes.BILL_SETTLED, "bills",
                           f"the tax bill of {decl} was settled already by payment notice {bill.settled_by}")
        if bill.remaining <= ZERO:
            return Refusal(codes.BILL_VOIDED, "bills",
                           f"the tax bill of {decl} was voided in full ({fen_str(bill.voided)} CNY): nothing is"
                           " owed on it to settle")
        settled.append(bill)
    # a bill partly voided (a partial return before payment) is settled for what it still owes
    total = sum((b.remaining for b in settled), ZERO)
    settled = [replace(b, settled_by=command.ent_duty_no) for b in settled]
    return Change("settle", total, account.changed(outstanding=account.outstanding - total), tuple(settled),
                  command.ent_duty_no)


_APPLY = {"amend": _amend, "extend": _extend, "freeze": _freeze, "unfreeze": _unfreeze, "close": _close,
          "void": _void, "settle": _settle}
