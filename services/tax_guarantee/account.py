"""A tax guarantee account (DOMAIN §4) and the tax bills deducted from it: plain values, no I/O.

An account is keyed by the collecting enterprise's ``assureCode``. Its *outstanding* amount is
the tax deducted and not yet voided or settled; what is left of the guaranteed amount is
*available*. Whether an account is expired is never stored: it follows from ``validTo`` and
today's date in China time, so an account expires at midnight without anybody writing to it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal

from services.common.clock import CHINA
from services.common.money import SCALE, ZERO

KINDS = ("bank_guarantee", "cash_deposit", "guarantee_insurance")  # 保函, 保证金, 保证保险

# Stored states. ``expired`` and ``not_yet_valid`` are derived from the dates (see ``status``).
ACTIVE = "active"
FROZEN = "frozen"
CLOSED = "closed"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"

HUNDRED = Decimal(100)
_PERCENT_PLACES = Decimal(1).scaleb(-SCALE)


@dataclass(frozen=True)
class Account:
    assure_code: str
    kind: str
    guaranteed: Decimal
    outstanding: Decimal
    state: str          # ACTIVE | FROZEN | CLOSED
    valid_from: date
    valid_to: date      # inclusive
    seq: int            # changes applied so far; the next ledger entry gets seq + 1

    @property
    def available(self) -> Decimal:
        return self.guaranteed - self.outstanding

    def changed(self, **fields) -> "Account":
        return replace(self, seq=self.seq + 1, **fields)


@dataclass(frozen=True)
class Bill:
    """The tax of one declaration deducted from one account, and what happened to it since."""
    declaration_id: str
    deducted: Decimal
    voided: Decimal = ZERO
    settled_by: str = ""  # entDutyNo of the payment notice that settled it
    refunded: Decimal = ZERO  # voided after settlement: paid tax customs owes back (not the balance's)

    @property
    def remaining(self) -> Decimal:
        """What is still owed on this bill (0 once settled)."""
        return ZERO if self.settled_by else self.deducted - self.voided


def china_date(ms: int) -> date:
    """The calendar date in China time of a moment given in ms since the epoch."""
    return datetime.fromtimestamp(ms // 1000, CHINA).date()


def parse_day(text: str) -> date:
    """``YYYYMMDD`` → date; ValueError for anything else."""
    text = (text or "").strip()
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"{text!r} is not a date in the form YYYYMMDD")
    return datetime.strptime(text, "%Y%m%d").date()


def day_text(day: date) -> str:
    return day.strftime("%Y%m%d")


def status(account: Account, today: date) -> str:
    """The state that decides whether tax can be deducted today."""
    if account.state != ACTIVE:
        return account.state
    if today > account.valid_to:
        return EXPIRED
    if today < account.valid_from:
        return NOT_YET_VALID
    return ACTIVE


def utilisation(guaranteed: Decimal, outstanding: Decimal) -> Decimal:
    """Outstanding tax as a percentage of the guaranteed amount, cut (not rounded) to 5 places.

    Cutting keeps a utilisation just below a threshold from being shown as the threshold.
    """
    if guaranteed <= ZERO:
        return ZERO if outstanding <= ZERO else HUNDRED
    return (outstanding * HUNDRED / guaranteed).quantize(_PERCENT_PLACES, rounding=ROUND_DOWN)


def reaches(guaranteed: Decimal, outstanding: Decimal, threshold: Decimal) -> bool:
    """Exactly (no division) whether outstanding is at least ``threshold`` percent of guaranteed."""
    if guaranteed <= ZERO:
        return outstanding > ZERO
    return outstanding * HUNDRED >= threshold * guaranteed


def days_left(account: Account, today: date) -> int:
    """Whole days from today to the last valid day (0 on the last day, negative once expired)."""
    return (account.valid_to - today).days
