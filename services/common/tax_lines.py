"""Each line's share of a declaration's tax and taxable value (DOMAIN §3), in whole fen that add
up to the declaration's head exactly (pure; no I/O).

Each line's exact tax (its pro-rata share of the taxable value P at the line's rates, as
integers over one common denominator) is rounded down to the fen, and the fen the head has
left over go to the lines with the largest remainders (ties to the lower ``gnum``; largest
remainder method), so every line is within a fen of its exact tax. ``taxPrice`` is each
line's exact share of P apportioned the same way. The tax bill (CEB816) shows these lines;
a return voids the returned lines' part of them.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from services.common.money import FEN, SCALE, UNIT, round_fen, to_units
from services.common.rates import RateTable

_REDUCTION = Fraction(7, 10)  # 70% of the statutory VAT and consumption tax within the limits (DOMAIN §3)


def apportion(total: Decimal, exact: Sequence[int], denominator: int) -> list[Decimal]:
    """``total`` split over the exact line amounts ``exact[i] / denominator`` CNY, in whole fen
    (whole 0.00001 when ``total`` is not a whole fen), adding up to ``total``.

    When ``total`` is the rounded sum of the exact amounts each part is its exact amount rounded
    down or up (the largest remainders go up, ties to the first line); otherwise (a head computed
    with other rates) ``total`` is split in proportion to them, or evenly when they are all 0.
    Integers throughout: the exact amounts share one denominator.
    """
    if not exact:
        return []
    unit, per_cny = (FEN, 100) if total == round_fen(total) else (UNIT, 10**SCALE)
    units = int(total.scaleb(2 if unit == FEN else SCALE))
    wanted, whole = [a * per_cny for a in exact], denominator  # line i wants wanted[i] / whole units
    parts = [a // whole for a in wanted]
    if not 0 <= units - sum(parts) <= len(parts):
        weights = wanted if any(wanted) else [1] * len(wanted)
        wanted, whole = [units * a for a in weights], sum(weights)
        parts = [a // whole for a in wanted]
    left = units - sum(parts)
    for i in sorted(range(len(wanted)), key=lambda i: (-(wanted[i] % whole), i))[:left]:
        parts[i] += 1
    return [Decimal(p) * unit for p in parts]


def line_taxes(verdict: dict, rates: RateTable) -> list[dict]:
    """``sandan.TaxLine`` records of the verdict's inventory lines (see the module's doc)."""
    lines = sorted((verdict.get("inventory") or {}).get("lines") or [], key=lambda line: line["gnum"])
    if not lines:
        return []
    weights = [to_units(line["totalPrice"]) for line in lines]
    if sum(weights) == 0:  # every line free (gifts): P splits evenly, as the match's tax does
        weights = [1] * len(lines)
    # line l's share of P is taxable * weights[l] / sum(weights); its taxes that share times a
    # factor of its rates. Over one common denominator every exact amount is an integer.
    taxable = to_units(verdict["taxableValue"])
    excise, vat = zip(*(_factors(rates.lookup(line.get("gcode") or "")) for line in lines))
    common = math.lcm(*(f.denominator for f in excise + vat))
    denominator = 10**SCALE * sum(weights) * common
    base = [taxable * w for w in weights]
    shares = [b * common for b in base]
    columns = {"taxPrice": apportion(verdict["taxableValue"], shares, denominator),
               "customsTax": apportion(verdict["customsTax"], shares, denominator),
               "valueAddedTax": apportion(verdict["valueAddedTax"], _times(base, vat, common), denominator),
               "consumptionTax": apportion(verdict["consumptionTax"], _times(base, excise, common), denominator)}
    return [{"gnum": line["gnum"], "gcode": line["gcode"], **{name: column[i] for name, column in columns.items()}}
            for i, line in enumerate(lines)]


@functools.lru_cache(maxsize=256)
def _factors(rates: tuple[Decimal, Decimal]) -> tuple[Fraction, Fraction]:
    """(consumption tax, VAT) per CNY of a line's share of P: c/(1−c)·0.7 and v/(1−c)·0.7."""
    v, c = (Fraction(r) for r in rates)
    return c / (1 - c) * _REDUCTION, v / (1 - c) * _REDUCTION


def _times(base: list[int], factors: tuple[Fraction, ...], common: int) -> list[int]:
    """Numerators over the common denominator of each line's share times its factor."""
    return [b * f.numerator * (common // f.denominator) for b, f in zip(base, factors)]


def exact_line_taxes(lines: Sequence[Mapping], taxable_value: Decimal, rates: RateTable) -> dict[int, Fraction]:
    """Each line's exact tax (consumption tax + VAT; the tariff is 0), by ``gnum``: its pro-rata
    share of P (by ``totalPrice``; evenly when every line is free) at its own rates, unrounded.
    A return voids the returned quantity's part of these, rounded once."""
    weights = [Fraction(line["totalPrice"]) for line in lines]
    if sum(weights) == 0:
        weights = [Fraction(1)] * len(lines)
    whole = sum(weights)
    out: dict[int, Fraction] = {}
    for line, weight in zip(lines, weights):
        excise, vat = _factors(rates.lookup(line.get("gcode") or ""))
        out[line["gnum"]] = Fraction(taxable_value) * weight / whole * (excise + vat)
    return out
