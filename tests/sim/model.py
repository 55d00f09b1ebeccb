"""The exact model the ledger simulation checks the real code against: integers of 0.00001 CNY.

It states DOMAIN §3 (annual quota) and §4 (guarantee accounts) as plainly as possible, with no
code shared with the services: one dict per account, one per bill, one per buyer-year quota,
and the outcome decided for each idempotency key, so a redelivery changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ANNUAL_LIMIT = 26_000 * 100_000
TODAY = 20250615  # the simulation's China date (tests.unit.tax_guarantee.samples.NOW_MS)


@dataclass
class Bill:
    deducted: int
    voided: int = 0
    settled: bool = False
    refunded: int = 0

    @property
    def remaining(self) -> int:
        return 0 if self.settled else self.deducted - self.voided


@dataclass
class Account:
    guaranteed: int
    valid_from: int
    valid_to: int
    outstanding: int = 0
    state: str = "active"  # active | frozen | closed
    bills: dict[str, Bill] = field(default_factory=dict)

    @property
    def available(self) -> int:
        return self.guaranteed - self.outstanding


@dataclass
class Model:
    accounts: dict[str, Account] = field(default_factory=dict)
    decided: dict[tuple[str, str], str] = field(default_factory=dict)  # (code, key) -> "applied" | refusal code
    held: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)  # quota: (buyer, year) -> decl -> P
    released: set[str] = field(default_factory=set)      # declarations whose whole reservation went back
    parts: set[tuple[str, str]] = field(default_factory=set)  # (declaration, return part) applied

    # --- the annual quota ----------------------------------------------------------------
    def reserve(self, decl: str, buyer: str, year: int, amount: int) -> bool:
        quota = self.held.setdefault((buyer, year), {})
        if decl in quota or decl in self.released:
            return True
        if sum(quota.values()) + amount > ANNUAL_LIMIT:
            return False
        quota[decl] = amount
        return True

    def release(self, decl: str, buyer: str, year: int, amount: int | None = None) -> None:
        quota = self.held.get((buyer, year), {})
        if decl not in quota:
            return
        share = quota[decl] if amount is None else min(amount, quota[decl])
        quota[decl] -= share
        if quota[decl] == 0:
            del quota[decl]
            self.released.add(decl)

    def release_part(self, decl: str, part: str, buyer: str, year: int, amount: int) -> None:
        if (decl, part) not in self.parts:
            self.parts.add((decl, part))
            self.release(decl, buyer, year, amount)

    def quota_total(self, buyer: str, year: int) -> int:
        return sum(self.held.get((buyer, year), {}).values())

    # --- guarantee accounts ----------------------------------------------------------------
    def _once(self, code: str, key: str, decide) -> str:
        if (code, key) not in self.decided:
            self.decided[(code, key)] = decide()
        return self.decided[(code, key)]

    def deduct(self, code: str, decl: str, tax: int) -> str:
        def decide() -> str:
            acct = self.accounts.get(code)
            if acct is None:
                return "GUARANTEE_UNKNOWN"
            if acct.state != "active" or not acct.valid_from <= TODAY <= acct.valid_to:
                return "GUARANTEE_INACTIVE"
            if acct.available < tax:
                return "GUARANTEE_INSUFFICIENT"
            acct.outstanding += tax
            acct.bills[decl] = Bill(tax)
            return "applied"
        return self._once(code, f"deduct/{decl}", decide)

    def command(self, code: str, command_id: str, action: str, **args) -> str:
        return self._once(code, f"command/{command_id}", lambda: self._command(code, action, **args))

    def _command(self, code: str, action: str, amount: int = 0, valid_from: int = 0, valid_to: int = 0,
                 decl: str = "", bills: tuple[str, ...] = ()) -> str:
        acct = self.accounts.get(code)
        if action == "register":
            if acct is not None:
                return "ACCOUNT_EXISTS"
            self.accounts[code] = Account(amount, valid_from, valid_to)
            return "applied"
        if acct is None:
            return "GUARANTEE_UNKNOWN"
        if acct.state == "closed":
            return "ACCOUNT_CLOSED"
        if action == "amend":
            if amount < acct.outstanding:
                return "BELOW_OUTSTANDING"
            acct.guaranteed = amount
        elif action == "extend":
            if valid_to <= acct.valid_to:
                return "NOT_LATER"
            acct.valid_to = valid_to
        elif action == "freeze":
            if acct.state == "frozen":
                return "ALREADY_FROZEN"
            acct.state = "frozen"
        elif action == "unfreeze":
            if acct.state != "frozen":
                return "NOT_FROZEN"
            acct.state = "active"
        elif action == "close":
            if acct.outstanding > 0:
                return "OUTSTANDING_TAX"
            acct.state = "closed"
        elif action == "void":
            return self._void(acct, decl, amount)
        elif action == "settle":
            return self._settle(acct, bills)
        return "applied"

    @staticmethod
    def _void(acct: Account, decl: str, amount: int) -> str:
        bill = acct.bills.get(decl)
        if bill is None:
            return "BILL_UNKNOWN"
        if bill.settled:  # paid already: the tax becomes a refund, the balance stays
            paid = bill.deducted - bill.voided
            if paid - bill.refunded <= 0:
                return "BILL_FULLY_VOIDED"
            bill.refunded += min(amount, paid - bill.refunded)
            return "applied"
        if bill.remaining <= 0:
            return "BILL_FULLY_VOIDED"
        restored = min(amount, bill.remaining)
        bill.voided += restored
        acct.outstanding -= restored
        return "applied"

    @staticmethod
    def _settle(acct: Account, bills: tuple[str, ...]) -> str:
        for decl in bills:
            bill = acct.bills.get(decl)
            if bill is None:
                return "BILL_UNKNOWN"
            if bill.settled:
                return "BILL_SETTLED"
            if bill.remaining <= 0:
                return "BILL_VOIDED"
        for decl in bills:  # a partly voided bill is settled for what it still owes
            acct.outstanding -= acct.bills[decl].remaining
            acct.bills[decl].settled = True
        return "applied"

    # --- after a failover ----------------------------------------------------------------------
    def follow(self, code: str, key: str, answer: str, entry: dict | None = None) -> None:
        """What the real code answered for an account whose Redis lost its last writes (a failover).

        Its answers are then no longer the model's to decide (they were made on the older state),
        but what it published is the truth: an applied change's effect is added to the account as
        its ledger entry states it (amounts in units), and the outstanding is what the bills owe."""
        if (code, key) in self.decided:
            return
        self.decided[(code, key)] = answer
        if answer != "applied" or entry is None:
            return
        acct, action = self.accounts[code], entry["action"]
        if action == "deduct":
            acct.bills[entry["decl"]] = Bill(entry["amount"])
        elif action == "void":
            acct.bills[entry["decl"]].voided += entry["amount"]
        elif action == "refund":
            acct.bills[entry["decl"]].refunded += entry["amount"]
        elif action == "settle":
            for decl in entry["bills"]:
                acct.bills[decl].settled = True
        elif action == "amend":
            acct.guaranteed = entry["amount"]
        elif action == "extend":
            acct.valid_to = entry["valid_to"]
        elif action in ("freeze", "unfreeze", "close"):
            acct.state = entry["state"]
        acct.outstanding = sum(b.remaining for b in acct.bills.values())
