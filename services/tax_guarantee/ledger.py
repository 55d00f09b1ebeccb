"""The guarantee ledger (DOMAIN §4): one ``sandan.LedgerEntry`` per change, and the replay
that rebuilds every account and tax bill from the entries alone.

An entry's id is derived from what caused it (``<assureCode>/deduct/<declarationId>`` or
``<assureCode>/command/<commandId>``), never from the time or a counter, so a redelivered
declaration or command re-emits the very same entry and readers de-duplicate by ``entryId``.
Each entry also carries the account's ``seq`` (1, 2, ... per account): deductions of one
account come from several partitions and several workers, so the topic's order is not the
order the changes were applied in; the replay sorts by ``seq`` and notices a missing one.

A ``seq`` used by two entries (a *fork*) is a change Redis lost in a failover (the replica it
promoted had not received it) followed by another change of the account on the new primary.
Both entries are real (both outcomes were published), so the replay counts every entry by its
``entryId`` and builds the account from the entries' effects, not from the last entry:
outstanding is what the bills leave owed, the other fields come from the entry that set them
last (by ``at``: the lost change was applied before the failover, the other after it).
``correction`` is the entry a repair appends after a fork: it restates the account as the
entries add up to, under a ``seq`` past every one used, and marks the fork resolved.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from services.common.money import ZERO
from services.tax_guarantee.account import Account, Bill, day_text, parse_day
from services.tax_guarantee.commands import Command, Refusal, parse_command
from services.tax_guarantee.rules import Change

SERVICE_ACTOR = "tax_guarantee"


def deduction_key(declaration_id: str) -> str:
    return f"deduct/{declaration_id}"


def command_key(command_id: str) -> str:
    return f"command/{command_id}"


def correction_key(seq: int) -> str:
    """The idempotency key of the correction that follows the account's entries up to ``seq``."""
    return f"correct/{seq}"


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


@dataclass
class Rebuilt:
    account: Account
    bills: dict[str, Bill]
    entries: list[dict]                                  # de-duplicated, in seq order
    problems: list[str] = field(default_factory=list)   # the ledger itself is inconsistent
    forks: list[tuple[int, list[str]]] = field(default_factory=list)  # (seq, entryIds) not yet corrected
    notes: list[str] = field(default_factory=list)      # forks a correction resolved: history, not differences


CORRECTION = "correct"
# Which account fields each action sets (outstanding always follows from the bills).
_SETS = {"register": ("kind", "guaranteed", "state", "validFrom", "validTo"), "amend": ("guaranteed",),
         "extend": ("validTo",), "freeze": ("state",), "unfreeze": ("state",), "close": ("state",),
         CORRECTION: ("kind", "guaranteed", "state", "validFrom", "validTo")}


def replay(entries: Iterable[dict]) -> dict[str, Rebuilt]:
    """Every account and bill as the ledger describes them (entries in any order, repeated or not)."""
    by_account: dict[str, dict[str, dict]] = {}
    for rec in entries:
        by_account.setdefault(rec["assureCode"], {}).setdefault(rec["entryId"], rec)
    # within a fork, the change applied first (the lost one, on the old primary) first
    return {code: _replay_account(sorted(unique.values(), key=lambda r: (r["seq"], r["at"], r["entryId"])))
            for code, unique in by_account.items()}


def _replay_account(ordered: list[dict]) -> Rebuilt:
    bills: dict[str, Bill] = {}
    problems: list[str] = []
    fields: dict = {}
    # fields as the last change that set them, in the order of application: within a fork the
    # lost change came before the failover, the other after it (``at``)
    for rec in sorted(ordered, key=lambda r: (r["at"], r["seq"], r["entryId"])):
        fields.update({name: rec[name] for name in _SETS.get(rec["action"], ())})
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
        elif rec["action"] == CORRECTION:
            _check_correction(rec, bills, problems)
    problems += [f"bill {b.declaration_id}: {b.voided} voided of {b.deducted} deducted" for b in bills.values()
                 if b.remaining < ZERO]
    last = ordered[-1]
    owed = sum((b.remaining for b in bills.values()), ZERO)
    now = {**{name: last[name] for name in _SETS["register"]}, **fields}  # the last entry's where none set one
    account = Account(last["assureCode"], now["kind"], now["guaranteed"], owed, now["state"],
                      parse_day(now["validFrom"]), parse_day(now["validTo"]), max(r["seq"] for r in ordered))
    rebuilt = Rebuilt(account, bills, ordered, problems)
    by_seq: dict[int, list[str]] = {}
    for rec in ordered:
        by_seq.setdefault(rec["seq"], []).append(rec["entryId"])
    corrections = [r for r in ordered if r["action"] == CORRECTION]
    for seq, ids in sorted(by_seq.items()):
        if len(ids) < 2:
            continue
        fixed = next((c for c in corrections if c["seq"] > seq), None)
        if fixed is None:
            rebuilt.forks.append((seq, ids))
            problems.append(f"seq {seq} is used by {len(ids)} entries ({', '.join(ids)}): a Redis write lost in a"
                            f" failover, then another change on the promoted replica; the entries add up to outstanding"
                            f" {owed}, the last entry says {last['outstanding']} (--repair appends a correcting entry)")
        else:
            rebuilt.notes.append(f"seq {seq} is used by {len(ids)} entries ({', '.join(ids)}), a Redis write lost in a"
                                 f" failover; corrected by {fixed['entryId']}")
    missing = sorted(set(range(1, account.seq + 1)) - set(by_seq))
    if missing:
        problems.append(f"entries missing from the ledger: seq {', '.join(map(str, missing))}")
    if not rebuilt.forks and owed != last["outstanding"]:
        problems.append(f"bills add up to {owed} outstanding, the last entry says {last['outstanding']}")
    return rebuilt


def _check_correction(rec: dict, bills: dict[str, Bill], problems: list[str]) -> None:
    owed = sum((b.remaining for b in bills.values()), ZERO)
    if owed != rec["outstanding"]:
        problems.append(f"{rec['entryId']} restates outstanding {rec['outstanding']}, the entries before it add up"
                        f" to {owed}")


def correction(rebuilt: Rebuilt, at: int, actor: str) -> dict:
    """The entry that restates a forked account as its entries add up to (``sandan guarantee
    rebuild --repair``): its ``seq`` is past every one used, so the account's next change takes
    a ``seq`` nobody holds; ``amount`` is how far the last entry's outstanding was off (negative:
    it said more than the entries add up to)."""
    acct = rebuilt.account
    last = rebuilt.entries[-1]
    seq = acct.seq + 1
    forked = "; ".join(f"seq {s}: {', '.join(ids)}" for s, ids in rebuilt.forks)
    return {"entryId": entry_id(acct.assure_code, correction_key(acct.seq)), "assureCode": acct.assure_code,
            "seq": seq, "action": CORRECTION, "amount": acct.outstanding - last["outstanding"],
            "guaranteed": acct.guaranteed, "outstanding": acct.outstanding, "available": acct.available,
            "kind": acct.kind, "state": acct.state, "validFrom": day_text(acct.valid_from),
            "validTo": day_text(acct.valid_to), "reference": forked, "declarationId": None, "commandId": None,
            "bills": [], "entDutyNo": None, "reason": "a Redis failover lost a change: " + forked,
            "actor": actor, "at": at}


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


# Dead letters of guarantee.commands that are no decision of the service: nothing was recorded.
UNDECIDED = ("UNDECODABLE", "PROCESSING_ERROR")


def command_refusals(dead_letters: Iterable[dict], source: str,
                     decode: Callable[[bytes], tuple[str, dict]]) -> list[RecordedRefusal]:
    """The refused commands among the ``deadletter`` records of ``source`` (the guarantee.commands
    topic), which a rebuild restores like the refused deductions: a refused command has no ledger
    entry either, and decided anew after a repair it could get another answer than the first
    (a void refused BILL_FULLY_VOIDED, redelivered after the account closed: ACCOUNT_CLOSED).
    ``decode``: the wire codec's, raising ValueError on bytes that are no record."""
    found: dict[tuple[str, str], RecordedRefusal] = {}
    for rec in dead_letters:
        if rec.get("source") != source or rec.get("code") in UNDECIDED or not rec.get("payload"):
            continue
        try:
            name, record = decode(rec["payload"])
        except ValueError:
            continue
        if name != "sandan.GuaranteeCommand":
            continue
        command = parse_command(record)
        if isinstance(command, Refusal):  # refused for its shape, before any decision: the same every time
            continue
        key = command_key(command.command_id)
        found.setdefault((command.assure_code, key), RecordedRefusal(
            command.assure_code, key, Refusal(rec["code"], rec["field"], rec["reason"]), rec["at"]))
    return list(found.values())
