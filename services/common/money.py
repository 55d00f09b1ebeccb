"""Exact money: ``decimal.Decimal`` in the domain, scale-5 integers on the wire.

The CEB standard allows up to 5 fraction digits and 19 total digits for every amount,
so an amount fits a signed 64-bit integer of 1/100000 CNY units exactly. Nothing here
ever touches a float.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SCALE = 5
UNIT = Decimal(1).scaleb(-SCALE)  # 0.00001
_FACTOR = 10**SCALE
FEN = Decimal("0.01")
ZERO = Decimal(0)
MAX_TOTAL_DIGITS = 19
# The largest amount a record carries: a signed 64-bit count of 1/10^SCALE CNY (services/common/avro.py).
MAX_AMOUNT = Decimal(2**63 - 1).scaleb(-SCALE)


class AmountError(ValueError):
    """An amount that is not a plain decimal within the standard's precision."""


def parse_amount(text: str, *, fraction_digits: int = SCALE, total_digits: int = MAX_TOTAL_DIGITS) -> Decimal:
    """Parse a CEB decimal (``xs:decimal`` lexical form) and check its precision.

    Refuses exponents, NaN/Infinity, thousands separators and excess digits: the
    standard's decimal is a plain ``[+-]?digits[.digits]`` string.
    """
    s = text.strip()
    body = s[1:] if s[:1] in "+-" else s
    intpart, dot, frac = body.partition(".")
    if not body or not (intpart or frac) or not (intpart.isascii() and frac.isascii()) \
            or (intpart and not intpart.isdigit()) or (frac and not frac.isdigit()) \
            or (dot and not frac and not intpart):
        raise AmountError(f"not a decimal number: {text!r}")
    if len(frac) > fraction_digits:
        raise AmountError(f"{text!r} has {len(frac)} fraction digits, at most {fraction_digits} allowed")
    digits = len(intpart.lstrip("0")) + len(frac)
    if digits > total_digits:
        raise AmountError(f"{text!r} has {digits} digits, at most {total_digits} allowed")
    try:
        return Decimal(s)
    except InvalidOperation as exc:  # pragma: no cover - guarded above
        raise AmountError(f"not a decimal number: {text!r}") from exc


def to_units(amount: Decimal) -> int:
    """Decimal → integer count of 0.00001 CNY; refuses values that would lose digits."""
    scaled = amount.scaleb(SCALE)
    if scaled != scaled.to_integral_value():
        raise AmountError(f"{amount} has more than {SCALE} fraction digits")
    return int(scaled)


def from_units(units: int) -> Decimal:
    """Integer count of 0.00001 CNY → Decimal with exactly 5 fraction digits."""
    return Decimal(units).scaleb(-SCALE)


def round_fen(amount: Decimal) -> Decimal:
    """Round half-up to 0.01 CNY (the rounding DOMAIN §3 prescribes for each tax kind)."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def fen_str(amount: Decimal) -> str:
    """Two-decimal string for reports (``"28.21"``)."""
    return str(round_fen(amount))


def amount_str(amount: Decimal) -> str:
    """An amount for people, exactly as computed: two decimals at least, more only where they
    are not zero (``5000`` → ``"5000.00"``, ``5000.00400`` → ``"5000.004"``); never rounded."""
    whole, _, fraction = format(amount, "f").partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def plain(amount: Decimal) -> str:
    """A decimal as a plain string without exponent, trailing zeros kept as given."""
    return format(amount, "f")
