"""The rules of cancellation and return (DOMAIN §5) as pure functions: time windows, the
returnable quantities, and the tax and quota a return gives back.

**Days.** *(decision)* A day is a calendar day in China time (UTC+8): the day of an event is
its China date minus the China date of the release, so the release day is day 0 and every
moment of day 30 counts as day 30. A return request (CEB625 ``appTime``) on day 30 passes and
one on day 31 is ``RETURN_LATE``; goods arriving on day 45 pass and on day 46 are
``RETURN_ARRIVAL_LATE``; a request whose goods have not arrived expires at the first moment of
day 46 (China midnight). Both limits are settings (30 and 45 by default).

**Amounts.** A return voids its lines' own tax: each returned line's exact tax (its pro-rata
share of P at its own rates, ``services/common/tax_lines.py``: a make-up line carries
consumption tax, a shirt beside it none) × returned qty / declared qty. It gives back to the buyer's quota
the share of the taxable value P its lines are worth: Σ line ``totalPrice`` × returned qty /
declared qty over Σ line ``totalPrice``. Both are summed exactly and rounded half-up to the fen
once. A partial amount never exceeds what is left, and the return that brings every line back
takes exactly what is left, so the parts of a fully returned declaration add up to the bill to
the fen (and to P to the 0.00001).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

from services.common import config
from services.common.clock import CHINA, parse_app_time
from services.common.money import ZERO, plain
from services.common.rates import RateTable
from services.common.tax_lines import exact_line_taxes
from services.common.verdict import Failure
from services.common import codes

DAY_MS = 24 * 3600 * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Quantities = dict[int, Decimal]


@dataclass(frozen=True)
class Windows:
    apply_days: int = 30    # a return is applied for by day 30 after release
    arrival_days: int = 45  # its goods reach the returns centre by day 45

    @classmethod
    def from_env(cls) -> "Windows":
        return cls(config.get_int("SANDAN_RETURN_APPLY_DAYS"), config.get_int("SANDAN_RETURN_ARRIVAL_DAYS"))


# --- time windows --------------------------------------------------------------------------

def china_date(ms: int) -> date:
    return datetime.fromtimestamp(ms // 1000, CHINA).date()


def epoch_ms(moment: datetime) -> int:
    """An aware datetime as whole ms since the epoch (integer arithmetic throughout)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def app_time_ms(text: str) -> int:
    """A CEB ``appTime`` (``YYYYMMDDhhmmss``, China time) as ms since the epoch."""
    return epoch_ms(parse_app_time(text))


def day_after_release(released_ms: int, event_ms: int) -> int:
    """Calendar days in China time from the release to the event (release day = 0)."""
    return (china_date(event_ms) - china_date(released_ms)).days


def applied_in_time(released_ms: int, applied_ms: int, windows: Windows) -> bool:
    return day_after_release(released_ms, applied_ms) <= windows.apply_days


def arrived_in_time(released_ms: int, arrived_ms: int, windows: Windows) -> bool:
    return day_after_release(released_ms, arrived_ms) <= windows.arrival_days


def arrival_deadline(released_ms: int, windows: Windows) -> int:
    """The first moment (ms) at which goods are too late: China midnight starting day 46."""
    released = china_date(released_ms)
    release_day = datetime(released.year, released.month, released.day, tzinfo=CHINA)
    return epoch_ms(release_day) + (windows.arrival_days + 1) * DAY_MS


# --- quantities ----------------------------------------------------------------------------

def quantities(lines: Iterable[Mapping]) -> Quantities:
    """Quantity per ``gnum`` (lines naming the same gnum add up)."""
    out: Quantities = {}
    for line in lines:
        out[line["gnum"]] = out.get(line["gnum"], ZERO) + line["qty"]
    return out


def add(into: Quantities, more: Mapping[int, Decimal]) -> Quantities:
    for gnum, qty in more.items():
        into[gnum] = into.get(gnum, ZERO) + qty
    return into


def returnable(declared: Quantities, returned: Quantities, pending: Quantities) -> Quantities:
    """What may still be asked for per line: declared minus returned minus already requested."""
    return {g: q - returned.get(g, ZERO) - pending.get(g, ZERO) for g, q in declared.items()}


def item_failures(declared: Quantities, returned: Quantities, pending: Quantities,
                  requested: list[Mapping]) -> list[Failure]:
    """RETURN_ITEMS failures of a request's lines (empty when it names returnable goods)."""
    if not requested:
        return [Failure(codes.RETURN_ITEMS, "InvtRefundList", "the request names no goods")]
    left = returnable(declared, returned, pending)
    failures = []
    for i, line in enumerate(requested, 1):
        gnum, qty = line["gnum"], line["qty"]
        if gnum not in declared:
            failures.append(Failure(codes.RETURN_ITEMS, f"InvtRefundList[{i}]/gnum",
                                    f"gnum {gnum} is not a line of the declaration"))
        elif qty <= ZERO:
            failures.append(Failure(codes.RETURN_ITEMS, f"InvtRefundList[{i}]/qty",
                                    f"qty {plain(qty)} of gnum {gnum} is not positive"))
    wanted = quantities(line for line in requested if line["gnum"] in declared and line["qty"] > ZERO)
    for gnum, qty in sorted(wanted.items()):
        if qty > left[gnum]:
            failures.append(Failure(
                codes.RETURN_ITEMS, "InvtRefundList/qty",
                f"gnum {gnum}: {plain(qty)} asked for, but only {plain(max(left[gnum], ZERO))} of"
                f" {plain(declared[gnum])} declared is returnable ({plain(returned.get(gnum, ZERO))} returned,"
                f" {plain(pending.get(gnum, ZERO))} in requests waiting for their goods)"))
    return failures


def fully_returned(declared: Quantities, returned: Quantities) -> bool:
    return all(returned.get(g, ZERO) >= q for g, q in declared.items())


# --- amounts -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refund:
    tax: Decimal    # tax to void on the guarantee
    quota: Decimal  # taxable value to give back to the buyer's annual quota


def returned_value(lines: Iterable[Mapping], returning: Mapping[int, Decimal]) -> tuple[Fraction, Fraction]:
    """(value of the returning goods, value of all declared goods) by line ``totalPrice``, exact.

    When every line is free (gifts) the value cannot weigh them, so each line counts as 1.
    """
    lines = list(lines)
    total = sum((Fraction(line["totalPrice"]) for line in lines), Fraction(0))
    weight = (lambda line: Fraction(line["totalPrice"])) if total > 0 else (lambda line: Fraction(1))
    value = sum((weight(line) * Fraction(returning[line["gnum"]]) / Fraction(line["qty"])
                 for line in lines if returning.get(line["gnum"])), Fraction(0))
    return value, (total if total > 0 else Fraction(len(lines)))


def returned_tax(lines: Iterable[Mapping], returning: Mapping[int, Decimal], taxable_value: Decimal,
                 rates: RateTable) -> Fraction | None:
    """The returning goods' own tax, exact: each line's exact tax (its share of P at its own
    rates) × returned qty / declared qty. None when a line has no HS code on record (learned
    before lines kept theirs): the tax is then shared by value like the quota."""
    lines = list(lines)
    if any(line.get("gcode") is None for line in lines):
        return None
    own = exact_line_taxes(lines, taxable_value, rates)
    return sum((own[line["gnum"]] * Fraction(returning[line["gnum"]]) / Fraction(line["qty"])
                for line in lines if returning.get(line["gnum"])), Fraction(0))


def _half_up_fen(amount: Fraction) -> Decimal:
    """A non-negative exact amount rounded half-up to 0.01 CNY (once, from the exact value)."""
    return Decimal(math.floor(amount * 100 + Fraction(1, 2))).scaleb(-2)


def _part(whole: Decimal, given: Decimal, exact: Fraction, last: bool) -> Decimal:
    left = whole - given
    if last:
        return left
    return max(ZERO, min(_half_up_fen(exact), left))


def refund_amounts(lines: list[Mapping], returned_before: Quantities, returning: Quantities, *,
                   tax_total: Decimal, taxable_value: Decimal, voided_before: Decimal,
                   restored_before: Decimal, rates: RateTable) -> Refund:
    """Tax and quota a completed return gives back (see the module note on rounding)."""
    value, total = returned_value(lines, returning)
    tax = returned_tax(lines, returning, taxable_value, rates)
    if tax is None:
        tax = Fraction(tax_total) * value / total
    last = fully_returned(quantities(lines), add(dict(returned_before), returning))
    return Refund(tax=_part(tax_total, voided_before, tax, last),
                  quota=_part(taxable_value, restored_before, Fraction(taxable_value) * value / total, last))
