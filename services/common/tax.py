"""Import tax of a cross-border retail declaration (DOMAIN §3, 财关税〔2018〕49号).

Within the limits the tariff is 0 and VAT and consumption tax are due at 70%:
per line, consumption = Pₗ/(1−c)·c·0.7 and VAT = (Pₗ + Pₗ/(1−c)·c)·v·0.7, where Pₗ is the
line's pro-rata share of P. Every share and every line's tax is an exact fraction; each kind
is summed exactly and rounded half-up to the fen once; the total is the sum of the rounded
kinds. An exact 30.645 is therefore 30.65, never a 34-digit 30.6449…9.

Where the amounts come from (a choice; DOMAIN says P = goodsValue + freight + insuredFee):
the ORDER's ``goodsValue`` and ``freight``, the INVENTORY's ``insuredFee`` (the order has
none), and the inventory's lines for the HS codes (``gcode``) and the weights of the pro
rata allocation (``totalPrice``, which equals the order line's when the documents agree).
``compute_tax`` therefore takes the inventory lines plus an optional ``goods_value``; without
it (no order at hand) the goods value is Σ inventory line ``totalPrice`` and the caller
passes the inventory's freight.

The arithmetic is on integers. With wₗ a line's weight, W = Σ wₗ and the rates of a line
folded into kc = c/(1−c) and kv = v/(1−c) (exact fractions, cached per rate pair):
consumption = 0.7·P·Σ wₗ·kc / W and VAT = 0.7·P·Σ wₗ·kv / W. Lines sharing a rate pair are
summed first (the same sum), so a single-rate declaration needs no weights at all.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext
from fractions import Fraction
from math import lcm

from services.common.money import ZERO
from services.common.rates import RateTable

CUSTOMS_DUTY = Decimal("0.00")  # tariff is 0 within the limits
# Additions in this context are exact whatever the operands (no rounding, no overflow): P and
# the weights are sums of declared amounts and must be the exact values.
_EXACT_SUM = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

Rate = tuple[Decimal, Decimal]  # (VAT rate v, consumption-tax rate c)
_factors: dict[Rate, tuple[int, int, int]] = {}


@dataclass(frozen=True)
class TaxResult:
    customs: Decimal
    consumption: Decimal
    vat: Decimal
    total: Decimal
    taxable_value: Decimal


def compute_tax(lines: Iterable[Mapping], freight: Decimal | None, insured_fee: Decimal | None,
                rates: RateTable, *, goods_value: Decimal | None = None) -> TaxResult:
    """Tax of the given inventory lines (``gcode``, ``totalPrice``) plus freight and insurance.

    ``goods_value`` replaces Σ ``totalPrice`` in P (the order's value); the lines then only
    decide how P splits between rates. Lines whose prices all add up to zero (gifts) split P
    evenly by line count.
    """
    weights: dict[Rate, Decimal] = {}
    counts: dict[Rate, int] = {}
    with localcontext(_EXACT_SUM):
        line_sum = ZERO
        for line in lines:
            price = _amount(line.get("totalPrice"))
            rate = rates.lookup(line.get("gcode") or "")
            weights[rate] = weights.get(rate, ZERO) + price
            counts[rate] = counts.get(rate, 0) + 1
            line_sum += price
        goods = line_sum if goods_value is None else _amount(goods_value)
        taxable = goods + _amount(freight) + _amount(insured_fee)
    if not weights:  # no lines to classify: the whole value at the default rates
        weights[rates.lookup("")] = taxable
        counts[rates.lookup("")] = 1
    p_num, p_den = taxable.as_integer_ratio()
    if len(weights) == 1:
        kc, kv, k_den = _factor(next(iter(weights)))
    else:
        kc, kv, k_den = _mixed_factor(weights if line_sum else counts)
    # 0.7 × P × k  =  7·p_num·k_num / (10·p_den·k_den)
    den = 10 * p_den * k_den
    consumption = _half_up_fen(7 * p_num * kc, den)
    vat = _half_up_fen(7 * p_num * kv, den)
    return TaxResult(customs=CUSTOMS_DUTY, consumption=consumption, vat=vat,
                     total=CUSTOMS_DUTY + consumption + vat, taxable_value=taxable)


def _factor(rate: Rate) -> tuple[int, int, int]:
    """c/(1−c) and v/(1−c) of a rate pair as numerators over one integer denominator."""
    found = _factors.get(rate)
    if found is None:
        v, c = Fraction(rate[0]), Fraction(rate[1])
        kc, kv = c / (1 - c), v / (1 - c)
        den = lcm(kc.denominator, kv.denominator)
        found = _factors[rate] = (kc.numerator * (den // kc.denominator), kv.numerator * (den // kv.denominator), den)
    return found


def _mixed_factor(weights: Mapping[Rate, Decimal | int]) -> tuple[int, int, int]:
    """Σ wₗ·kc / W and Σ wₗ·kv / W over the rate groups (W = Σ wₗ ≠ 0), as two numerators
    over one denominator. Fractions are added without reducing: a few groups keep them small."""
    c_num = v_num = 0
    k_den = 1  # Σ w·kc and Σ w·kv are c_num/k_den and v_num/k_den
    w_num, w_den = 0, 1  # W
    for rate, weight in weights.items():
        kc, kv, kd = _factor(rate)
        n, d = weight.as_integer_ratio()
        term_den = d * kd
        c_num = c_num * term_den + n * kc * k_den
        v_num = v_num * term_den + n * kv * k_den
        k_den *= term_den
        w_num = w_num * d + n * w_den
        w_den *= d
    return c_num * w_den, v_num * w_den, k_den * w_num


def _half_up_fen(num: int, den: int) -> Decimal:
    """num/den CNY rounded half-up (away from zero on a tie) to 0.01, exactly."""
    if den < 0:
        num, den = -num, -den
    fen = (200 * abs(num) + den) // (2 * den)  # floor(|x|·100 + 1/2)
    return Decimal(f"{'-' if num < 0 and fen else ''}{fen}E-2")


def _amount(value) -> Decimal:
    """An amount as a Decimal; absent or not a finite number counts as 0 (the rules report
    such a field; the tax must still be computable)."""
    if value is None:
        return ZERO
    if not isinstance(value, Decimal):
        try:
            value = Decimal(value)
        except (ArithmeticError, TypeError, ValueError):
            return ZERO
    return value if value.is_finite() else ZERO
