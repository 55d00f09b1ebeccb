"""The guarantee ledger (DOMAIN §4): one ``sandan.LedgerEntry`` per change, and the replay
that rebuilds every account and tax bill from the entries alone.

An entry's id is derived from what caused it (``<assureCode>/deduct/<declarationId>`` or
``<assureCode>/command/<commandId>``), never from the time or a counter, so a redelivered
declaration or command re-emits the very same entry and readers de-duplicate by ``entryId``.
Each entry also carries the account's ``seq`` (1, 2, ... per account): deductions of one
account come from several partitions and several workers, so the topic's order is not the
order the changes were applied in; the replay sorts by ``seq`` and notices a missing one.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from services.common.money import ZERO
from services.tax_guarantee.account import Account, Bill, day_text, parse_day
from services.tax_guarantee.commands import Command, Refusal
from services.tax_guarantee.rules import Change

SERVICE_ACTOR = "tax_guarantee"


def deduction_key(declaration_id: str) -> str:
    return f"deduct/{declaration_id}"


def command_key(command_id: str) -> str:
    return f"command/{command_id}"


def entry_id(assure_code: str, key: str) -> str:
    return f"{assure_code}/{key}"


def entry(change: Change, *, key: str, at: int, command: Command | None = None) -> dict:
    """The ledger record of one applied change (``key``: its idempotency key)."""
    acct = change.account
    bill_actions = change.action in ("deduct", "void", "refund")
    return {
        "entryId": entry_id(acct.assure_code, key), "assureCode": acct.assure_code, "seq": acct.seq,
        "action": change.action, "amount": change.amount, "guaranteed": acct.guaranteed,
        "outstanding": acct.outstanding, "available": acct.available, "kind": acct.kind, "state": acct.state,
        "validFrom": day_text(acct.valid_from), "validTo": day_text(acct.valid_to), "reference": change.reference,
        "declarationId": change.reference if bill_actions else None,
        "commandId": command.command_id if command else None,
        "bills": [b.declaration_id for b in change.bills] if change.action == "settle" else [],
        "entDutyNo": change.reference if change.action == "settle" else None,
        "reason": command.reason if command else None,
        "actor": command.actor if command else SERVICE_ACTOR, "at": at,
    }


def account_after(rec: dict) -> Account:
    """The account exactly as the entry left it."""
    return Account(rec["assureCode"], rec["kind"], rec["guaranteed"], rec["outstanding"], rec["state"],
                   parse_day(rec["validFrom"]), parse_day(rec["validTo"]), rec["seq"])


@dataclass
class Rebuilt:
    account: Account
    bills: dict[str, Bill]
    entries: list[dict]                                  # de-duplicated, in seq order
    problems: list[str] = field(default_factory=list)   # the ledger itself is inconsistent


def replay(entries: Iterable[dict]) -> dict[str, Rebuilt]:
    """Every account and bill as the ledger describes them (entries in any order, repeated or not)."""
    by_account: dict[str, dict[str, dict]] = {}
    for rec in entries:
        by_account.setdefault(rec["assureCode"], {}).setdefault(rec["entryId"], rec)
    return {code: _replay_account(sorted(unique.values(), key=lambda r: r["seq"]))
            for code, unique in by_account.items()}


def _replay_account(ordered: list[dict]) -> Rebuilt:
    bills: dict[str, Bill] = {}
    problems: list[str] = []
    for rec in ordered:
        if rec["action"] == "deduct":
            bills[rec["declarationId"]] = Bill(rec["declarationId"], rec["amount"])
        elif rec["action"] in ("void", "settle", "refund"):
            for decl in rec["bills"] or [rec["declarationId"]]:
                bill = bills.get(decl)
                if bill is None:
                    problems.append(f"{rec['entryId']} names bill {decl}, which no earlier entry deducted")
                elif rec["action"] == "void":
                    bills[decl] = replace(bill, voided=bill.voided + rec["amount"])
                elif rec["action"] == "refund":
                    bills[decl] = replace(bill, refunded=bill.refunded + rec["amount"])
                else:
                    bills[decl] = replace(bill, settled_by=rec["entDutyNo"])
    rebuilt = Rebuilt(account_after(ordered[-1]), bills, ordered, problems)
    seqs = [r["seq"] for r in ordered]
    if seqs != list(range(1, len(seqs) + 1)):
        missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
        rebuilt.problems.append(f"entries missing from the ledger: seq {', '.join(map(str, missing)) or '?'}")
    owed = sum((b.remaining for b in bills.values()), ZERO)
    if owed != rebuilt.account.outstanding:
        rebuilt.problems.append(f"bills add up to {owed} outstanding, the last entry says"
                                f" {rebuilt.account.outstanding}")
    return rebuilt


@dataclass(frozen=True)
class RecordedRefusal:
    """A deduction the service refused, as ``declarations.refused`` tells it."""
    assure_code: str
    key: str            # the idempotency key: deduct/<declarationId>
    refusal: Refusal
    at: int


def refusals(refused: Iterable[dict]) -> list[RecordedRefusal]:
    """The refusals a rebuild restores with the ledger: without them a declaration delivered again
    after a repair would be decided anew, and could be cleared after it was refused."""
    found: dict[tuple[str, str], RecordedRefusal] = {}
    for rec in refused:
        failures = rec.get("failures") or []
        if not failures or not rec.get("declarationId"):
            continue
        first = failures[0]
        code = (rec.get("assureCode") or "").strip()
        key = deduction_key(rec["declarationId"])
        found.setdefault((code, key), RecordedRefusal(code, key, Refusal(first["code"], first["field"],
                                                                         first["message"]), rec["decidedAt"]))
    return list(found.values())
