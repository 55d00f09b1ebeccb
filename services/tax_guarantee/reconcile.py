"""What differs between an account in Redis and the same account rebuilt from the ledger.

Used by ``sandan guarantee rebuild``: the ledger is the source of truth, so every
difference is reported with both values, and ``--repair`` writes the ledger's side.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services.tax_guarantee.account import Account, Bill, day_text
from services.tax_guarantee.ledger import Rebuilt


@dataclass(frozen=True)
class Difference:
    assure_code: str
    subject: str   # an account field, "account", "bills", "idempotency records" or "ledger"
    redis: str
    ledger: str


@dataclass
class Reconciliation:
    differences: list[Difference] = field(default_factory=list)
    stray_bills: set[str] = field(default_factory=set)          # in Redis, not in the ledger
    missing_entries: list[dict] = field(default_factory=list)   # entries whose outcome Redis does not hold


def _fields(account: Account) -> dict:
    return {"kind": account.kind, "guaranteed": account.guaranteed, "outstanding": account.outstanding,
            "state": account.state, "validFrom": day_text(account.valid_from), "validTo": day_text(account.valid_to),
            "seq": account.seq}


def compare(rebuilt: Rebuilt, account: Account | None, bills: dict[str, Bill], recorded: set[str]) -> Reconciliation:
    """``account``, ``bills`` and ``recorded`` (ids of entries whose outcome is kept) as Redis has them."""
    code = rebuilt.account.assure_code
    result = Reconciliation()
    diffs = result.differences
    diffs += [Difference(code, "ledger", problem, "") for problem in rebuilt.problems]
    if account is None:
        diffs.append(Difference(code, "account", "missing", f"{rebuilt.account.seq} entries"))
    else:
        want, have = _fields(rebuilt.account), _fields(account)
        diffs += [Difference(code, name, str(have[name]), str(want[name])) for name in want if have[name] != want[name]]
    missing = sum(1 for d in rebuilt.bills if d not in bills)
    differ = sum(1 for d, b in rebuilt.bills.items() if d in bills and bills[d] != b)
    result.stray_bills = set(bills) - set(rebuilt.bills)
    if missing or differ or result.stray_bills:
        diffs.append(Difference(code, "bills", f"{missing} missing, {differ} differ, {len(result.stray_bills)} not in"
                                               " the ledger", f"{len(rebuilt.bills)} bills"))
    result.missing_entries = [e for e in rebuilt.entries if e["entryId"] not in recorded]
    if result.missing_entries:
        diffs.append(Difference(code, "idempotency records", f"{len(result.missing_entries)} missing",
                                f"{len(rebuilt.entries)} entries"))
    return result


def unknown_to_ledger(codes_in_redis: set[str], rebuilt: dict[str, Rebuilt]) -> list[Difference]:
    """Accounts Redis holds that no ledger entry mentions (reported, never deleted by a repair)."""
    return [Difference(code, "account", "present", "not in the ledger")
            for code in sorted(codes_in_redis - set(rebuilt))]
