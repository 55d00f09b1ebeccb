"""Import tax of a cross-border retail declaration (DOMAIN §3, 财关税〔2018〕49号).

Within the limits the tariff is 0 and VAT and consumption tax are due at 70%:
per line, consumption = Pₗ/(1−c)·c·0.7 and VAT = (Pₗ + Pₗ/(1−c)·c)·v·0.7, summed at full
precision, then each kind rounded half-up to the fen; the total is the sum of the rounded
kinds.

Where the amounts come from (a choice; DOMAIN says P = goodsValue + freight + insuredFee):
the ORDER's ``goodsValue`` and ``freight``, the INVENTORY's ``insuredFee`` (the order has
none), and the inventory's lines for the HS codes (``gcode``) and the weights of the pro
rata allocation (``totalPrice``, which equals the order line's when the documents agree).
``compute_tax`` therefore takes the inventory lines plus an optional ``goods_value``; without
it (no order at hand) the goods value is Σ inventory line ``totalPrice`` and the caller
passes the inventory's freight.

Lines sharing a (v, c) pair are summed before the allocation, which is the same sum by
distributivity but keeps the common single-rate case free of any division, so an amount
that is exactly on a half fen stays exactly there.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext

from services.common.money import ZERO, round_fen
from services.order_match.rates import RateTable

REDUCTION = Decimal("0.7")  # 70% of the statutory amount within the limits
CUSTOMS_DUTY = Decimal("0.00")  # tariff is 0 within the limits
_ONE = Decimal(1)
# 19-digit amounts times rates need far fewer than 34 digits; the rest absorbs divisions.
_PRECISE = Context(prec=34)


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
    decide how P splits between rates.
    """
    with localcontext(_PRECISE):
        weight_by_rate: dict[tuple[Decimal, Decimal], Decimal] = {}
        count_by_rate: dict[tuple[Decimal, Decimal], int] = {}
        line_sum = ZERO
        for line in lines:
            price = _amount(line.get("totalPrice"))
            rate = rates.lookup(line.get("gcode") or "")
            weight_by_rate[rate] = weight_by_rate.get(rate, ZERO) + price
            count_by_rate[rate] = count_by_rate.get(rate, 0) + 1
            line_sum += price
        goods = line_sum if goods_value is None else goods_value
        taxable = goods + _amount(freight) + _amount(insured_fee)
        if not weight_by_rate:
            # No lines to classify: the whole value at the default rates.
            weight_by_rate[rates.lookup("")] = taxable
            line_sum = taxable
        shares = _allocate(taxable, weight_by_rate, count_by_rate, line_sum)
        consumption = ZERO
        vat = ZERO
        for (v, c), share in shares:
            excise = share / (_ONE - c) * c if c else ZERO
            consumption += excise * REDUCTION
            vat += (share + excise) * v * REDUCTION
        consumption = round_fen(consumption)
        vat = round_fen(vat)
        return TaxResult(customs=CUSTOMS_DUTY, consumption=consumption, vat=vat,
                         total=CUSTOMS_DUTY + consumption + vat, taxable_value=taxable)


def _allocate(taxable: Decimal, weights: dict, counts: dict, weight_sum: Decimal) -> list:
    """Split P over the rate groups pro rata to their weight; the last takes the remainder
    so the shares add up to P exactly."""
    groups = list(weights.items())
    if len(groups) == 1:
        return [(groups[0][0], taxable)]
    total_count = sum(counts.values())
    shares = []
    given = ZERO
    for rate, weight in groups[:-1]:
        if weight_sum:
            share = taxable * weight / weight_sum
        else:  # every line is free (gifts): split evenly by line count
            share = taxable * counts[rate] / total_count
        shares.append((rate, share))
        given += share
    shares.append((groups[-1][0], taxable - given))
    return shares


def _amount(value) -> Decimal:
    if value is None:
        return ZERO
    return value if isinstance(value, Decimal) else Decimal(value)
