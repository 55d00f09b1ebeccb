"""Where accounts, bills and the outcome of every change are kept: the contract and a dict twin.

A change is read-decide-commit: ``snapshot`` reads the account, the bills involved and the
outcome already recorded for the change's idempotency key; the pure rules decide; ``commit``
writes the decision only if nothing was decided for that key meanwhile and the account's
``seq`` is still the one read (optimistic concurrency: every write to an account or its
bills advances ``seq``). A commit that loses the race is simply tried again from a fresh
snapshot, so every rule lives once, in ``rules``, and still holds under concurrency.

The outcome of a key (the ledger entry and warnings of an applied change, or the refusal) is
stored with the change, in the same atomic step: a redelivered declaration or command gets
the recorded outcome back and re-emits exactly what was emitted the first time.
``MemoryAccountStore`` is the same contract in dicts, for unit tests and offline use.

A batch of deductions goes through the same steps with one round trip each: ``snapshots``
reads every declaration's recorded outcome and each account once; the decisions on one
account are made one after the other in memory, each on the account as the previous one
left it, and committed together as a ``Chain``: all or none, under the same two checks
(no key decided meanwhile, the account's ``seq`` still the one read). A chain that loses
the race is decided again from fresh snapshots, like a single change.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from services.common.avro import codec
from services.tax_guarantee.account import Account, Bill
from services.tax_guarantee.commands import Refusal
from services.tax_guarantee.rules import Change


@dataclass(frozen=True)
class Applied:
    entry: dict                      # sandan.LedgerEntry
    warnings: tuple[dict, ...] = ()  # sandan.GuaranteeWarning
    receipts: tuple[dict, ...] = ()  # sandan.Receipt: the tax bill (CEB816) or its status changes (CEB818)
    # each record's wire bytes by id() once ``dump_outcome`` encoded them: the adapter publishes
    # those rather than encode the same records again (an outcome read back is encoded afresh,
    # with the current schema and wire format)
    wire: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Refused:
    refusal: Refusal
    at: int


Outcome = Applied | Refused


@dataclass(frozen=True)
class Snapshot:
    assure_code: str
    key: str                         # idempotency key: deduct/<declarationId> or command/<commandId>
    account: Account | None
    bills: dict[str, Bill] = field(default_factory=dict)
    outcome: Outcome | None = None   # set when the key was decided before (a redelivery)


@dataclass(frozen=True)
class Chain:
    """Decisions on one account, in order, to be committed together (see the module's doc)."""
    base: Snapshot                                            # the account as read: its seq is checked
    decisions: tuple[tuple[str, Outcome, Change | None], ...]  # (idempotency key, outcome, change)

    @property
    def account(self):
        """The account after the last change of the chain (None: unchanged)."""
        changed = [change.account for _, _, change in self.decisions if change is not None]
        return changed[-1] if changed else None


def dump_outcome(outcome: Outcome) -> bytes:
    """Outcome → bytes (records in the Avro wire format, so amounts stay exact)."""
    if isinstance(outcome, Refused):
        r = outcome.refusal
        doc = {"status": "refused", "code": r.code, "field": r.field, "message": r.message, "at": outcome.at}
    else:
        def encoded(schema: str, record: dict) -> str:
            data = outcome.wire.get(id(record))
            if data is None:
                data = outcome.wire[id(record)] = codec().encode(schema, record)
            return _b64(data)

        doc = {"status": "applied", "entry": encoded("sandan.LedgerEntry", outcome.entry),
               "warnings": [encoded("sandan.GuaranteeWarning", w) for w in outcome.warnings]}
        if outcome.receipts:
            doc["receipts"] = [encoded("sandan.Receipt", r) for r in outcome.receipts]
    return json.dumps(doc, ensure_ascii=False).encode()


def load_outcome(raw: bytes) -> Outcome:
    doc = json.loads(raw)
    if doc["status"] == "refused":
        return Refused(Refusal(doc["code"], doc["field"], doc["message"]), doc["at"])
    wire = codec()
    return Applied(wire.decode(base64.b64decode(doc["entry"]))[1],
                   tuple(wire.decode(base64.b64decode(w))[1] for w in doc["warnings"]),
                   tuple(wire.decode(base64.b64decode(r))[1] for r in doc.get("receipts", ())))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class AccountStore(Protocol):
    async def snapshot(self, assure_code: str, key: str, bill_ids: tuple[str, ...] = ()) -> Snapshot: ...

    async def commit(self, snapshot: Snapshot, outcome: Outcome, change: Change | None) -> bool:
        """Write the outcome (and the change) unless the key was decided or the account moved meanwhile."""

    async def snapshots(self, requests: Sequence[tuple[str, str]]) -> list[Snapshot]:
        """``snapshot`` of each (assureCode, key), without bills, in one round trip."""

    async def commit_chains(self, chains: Sequence[Chain]) -> list[bool]:
        """Each chain atomically, all its decisions or none, in one round trip for all."""

    async def account(self, assure_code: str) -> Account | None: ...

    async def accounts(self) -> list[Account]: ...

    async def outcome(self, assure_code: str, key: str) -> Outcome | None: ...

    async def claim_daily(self, assure_code: str, day: date) -> bool:
        """True the first time it is asked for an account and day (expiry warnings once a day)."""


class MemoryAccountStore:
    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._bills: dict[tuple[str, str], Bill] = {}
        self._outcomes: dict[tuple[str, str], bytes] = {}
        self._claimed: set[tuple[str, date]] = set()

    async def snapshot(self, assure_code, key, bill_ids=()):
        bills = {d: self._bills[(assure_code, d)] for d in bill_ids if (assure_code, d) in self._bills}
        raw = self._outcomes.get((assure_code, key))
        return Snapshot(assure_code, key, self._accounts.get(assure_code), bills,
                        load_outcome(raw) if raw is not None else None)

    async def commit(self, snapshot, outcome, change):
        current = self._accounts.get(snapshot.assure_code)
        if (snapshot.assure_code, snapshot.key) in self._outcomes or \
                (current.seq if current else None) != (snapshot.account.seq if snapshot.account else None):
            return False
        if change is not None:
            self._accounts[snapshot.assure_code] = change.account
            for bill in change.bills:
                self._bills[(snapshot.assure_code, bill.declaration_id)] = bill
        self._outcomes[(snapshot.assure_code, snapshot.key)] = dump_outcome(outcome)
        return True

    async def snapshots(self, requests):
        return [await self.snapshot(code, key) for code, key in requests]

    async def commit_chains(self, chains):
        applied = []
        for chain in chains:
            code = chain.base.assure_code
            current = self._accounts.get(code)
            read = chain.base.account
            if any((code, key) in self._outcomes for key, _, _ in chain.decisions) or \
                    (current.seq if current else None) != (read.seq if read else None):
                applied.append(False)
                continue
            for key, outcome, change in chain.decisions:
                if change is not None:
                    self._accounts[code] = change.account
                    for bill in change.bills:
                        self._bills[(code, bill.declaration_id)] = bill
                self._outcomes[(code, key)] = dump_outcome(outcome)
            applied.append(True)
        return applied

    async def account(self, assure_code):
        return self._accounts.get(assure_code)

    async def accounts(self):
        return [self._accounts[code] for code in sorted(self._accounts)]

    async def outcome(self, assure_code, key):
        raw = self._outcomes.get((assure_code, key))
        return load_outcome(raw) if raw is not None else None

    async def claim_daily(self, assure_code, day):
        if (assure_code, day) in self._claimed:
            return False
        self._claimed.add((assure_code, day))
        return True
