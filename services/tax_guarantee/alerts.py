"""Warnings (``sandan.GuaranteeWarning``): utilisation thresholds crossed, expiry approaching.

A threshold warns once per upward crossing: a change warns for every threshold the
utilisation was below before it and is at or above after it. Nothing has to remember which
thresholds fired: falling back below a threshold and rising again is simply a new crossing
(the threshold re-arms by itself). The warning's id is derived from the ledger entry that
crossed, so a redelivered change re-emits the same warning.
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from services.common.money import fen_str
from services.tax_guarantee.account import CLOSED, HUNDRED, Account, day_text, days_left, reaches, utilisation


def parse_thresholds(text: str) -> tuple[Decimal, ...]:
    """``"80,95"`` → (80, 95): percentages above 0 and at most 100, ascending."""
    try:
        values = sorted({Decimal(part.strip()) for part in text.split(",") if part.strip()})
    except InvalidOperation:
        raise ValueError(f"thresholds {text!r}: give percentages separated by commas, e.g. 80,95") from None
    if any(not (0 < v <= HUNDRED) for v in values):
        raise ValueError(f"thresholds {text!r}: every percentage must be above 0 and at most 100")
    return tuple(values)


def crossed(thresholds: tuple[Decimal, ...], before: Account | None, after: Account) -> list[Decimal]:
    """The thresholds the change from ``before`` (None: no account yet) to ``after`` crossed upwards."""
    return [t for t in thresholds
            if reaches(after.guaranteed, after.outstanding, t)
            and not (before is not None and reaches(before.guaranteed, before.outstanding, t))]


def utilisation_warnings(thresholds: tuple[Decimal, ...], before: Account | None, after: Account,
                         entry_id: str, at: int) -> list[dict]:
    used = utilisation(after.guaranteed, after.outstanding)
    return [_warning(after, f"{entry_id}/utilisation/{t}", "utilisation", at, threshold=t, entry_id=entry_id,
                     message=f"{after.assure_code}: {used}% of the guarantee is used (threshold {t}%),"
                             f" {fen_str(after.available)} CNY available")
            for t in crossed(thresholds, before, after)]


def expiry_warning(account: Account, today: date, warn_days: int, at: int) -> dict | None:
    """A warning when the account's last valid day is within ``warn_days`` (one id per account and day)."""
    left = days_left(account, today)
    if account.state == CLOSED or not (0 <= left <= warn_days):
        return None
    return _warning(account, f"{account.assure_code}/expiry/{day_text(today)}", "expiry", at, days=left,
                    message=f"{account.assure_code}: the guarantee expires after {day_text(account.valid_to)}"
                            f" ({left} days left)")


def _warning(account: Account, warning_id: str, kind: str, at: int, *, message: str, threshold: Decimal | None = None,
             entry_id: str | None = None, days: int | None = None) -> dict:
    return {"warningId": warning_id, "assureCode": account.assure_code, "kind": kind, "threshold": threshold,
            "utilisation": utilisation(account.guaranteed, account.outstanding), "guaranteed": account.guaranteed,
            "outstanding": account.outstanding, "available": account.available,
            "validTo": day_text(account.valid_to), "daysLeft": days, "entryId": entry_id, "message": message,
            "at": at}
