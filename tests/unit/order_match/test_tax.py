"""Import tax (DOMAIN §3): worked examples to the fen, pro-rata allocation, rounding."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import assume, given, settings as hyp_settings, strategies as st

from services.order_match.rates import load_rates
from services.order_match.rules import declaration_tax
from services.order_match.tax import TaxResult, compute_tax

D = Decimal
RATES = load_rates()
FOOD, MAKE_UP, JEWEL = "1901101000", "3304990099", "7113191900"


def line(gcode: str, total: str) -> dict:
    return {"gcode": gcode, "totalPrice": D(total)}


def test_worked_example_vat_only():
    tax = compute_tax([line(FOOD, "300")], D("10"), None, RATES)
    assert tax == TaxResult(customs=D("0.00"), consumption=D("0.00"), vat=D("28.21"), total=D("28.21"),
                            taxable_value=D("310"))
    assert str(tax.vat) == "28.21" and str(tax.customs) == "0.00"


def test_worked_example_make_up():
    tax = compute_tax([line(MAKE_UP, "1000")], D("0"), D("0"), RATES)
    assert (tax.consumption, tax.vat, tax.total) == (D("123.53"), D("107.06"), D("230.59"))
    assert tax.taxable_value == D("1000")


def test_freight_and_insurance_are_allocated_pro_rata_to_total_price():
    # P = 400 + 600 + 100 = 1100; the make-up line carries 40% of it: 440, the food line 660.
    # consumption = 440/0.85*0.15*0.7 = 54.3529.. ; VAT = (440 + 77.6470..)*0.091 + 660*0.091 = 107.1658..
    tax = compute_tax([line(MAKE_UP, "400"), line(FOOD, "600")], D("60"), D("40"), RATES)
    assert tax.taxable_value == D("1100")
    assert (tax.consumption, tax.vat, tax.total) == (D("54.35"), D("107.17"), D("161.52"))
    # Had the freight all landed on the food line, consumption would be 49.41: the share matters.
    assert compute_tax([line(MAKE_UP, "400")], D("0"), D("0"), RATES).consumption == D("49.41")


def test_allocation_does_not_depend_on_line_order():
    lines = [line(JEWEL, "123.45"), line(MAKE_UP, "67.89"), line(FOOD, "10.01")]
    forward = compute_tax(lines, D("12.34"), D("1.23"), RATES)
    backward = compute_tax(list(reversed(lines)), D("12.34"), D("1.23"), RATES)
    assert forward == backward


def test_each_kind_is_rounded_half_up_then_summed():
    # 15 x 0.091 = 1.365 exactly: half-up gives 1.37 (banker's rounding would give 1.36).
    assert compute_tax([line(FOOD, "15")], None, None, RATES).vat == D("1.37")
    # Jewellery of 1.35: consumption = 1.35/0.9*0.1*0.7 = 0.105 exactly, half-up 0.11 (not 0.10).
    assert compute_tax([line(JEWEL, "1.35")], None, None, RATES).consumption == D("0.11")
    # Rounded kinds add up to the total, not a rounding of the exact sum.
    tax = compute_tax([line(MAKE_UP, "10.05")], None, None, RATES)
    assert tax.total == tax.consumption + tax.vat + tax.customs


def test_goods_value_replaces_the_line_sum_but_lines_still_split_it():
    lines = [line(MAKE_UP, "500"), line(FOOD, "500")]
    tax = compute_tax(lines, D("0"), D("0"), RATES, goods_value=D("2000"))
    assert tax.taxable_value == D("2000")
    assert tax == compute_tax([line(MAKE_UP, "1000"), line(FOOD, "1000")], D("0"), D("0"), RATES)


def test_free_lines_split_the_value_evenly():
    tax = compute_tax([line(MAKE_UP, "0"), line(FOOD, "0")], D("0"), D("0"), RATES, goods_value=D("200"))
    assert tax == compute_tax([line(MAKE_UP, "100"), line(FOOD, "100")], D("0"), D("0"), RATES)


def test_no_lines_taxes_the_value_at_the_default_rates():
    assert compute_tax([], D("310"), None, RATES).vat == D("28.21")


def test_declaration_tax_uses_order_goods_and_freight_and_inventory_insurance():
    order = {"goodsValue": D("300"), "freight": D("10")}
    inventory = {"freight": D("999"), "insuredFee": D("0"), "lines": [line(FOOD, "300")]}
    assert declaration_tax(order, inventory, RATES).total == D("28.21")
    inventory["insuredFee"] = D("90")
    assert declaration_tax(order, inventory, RATES).taxable_value == D("400")
    # Without the order the inventory's own freight and lines decide.
    assert declaration_tax(None, inventory, RATES).taxable_value == D("1389")


# --- property: agrees with an exact rational computation -------------------------------

def _exact(lines: list[tuple[str, int]], extra_cents: int) -> tuple[Fraction, Fraction]:
    weight = sum(c for _, c in lines)
    total = Fraction(weight + extra_cents, 100)
    consumption = vat = Fraction(0)
    for gcode, cents in lines:
        v, c = (Fraction(r) for r in RATES.lookup(gcode))
        share = total * Fraction(cents, weight)
        excise = share / (1 - c) * c
        consumption += excise * Fraction(7, 10)
        vat += (share + excise) * v * Fraction(7, 10)
    return consumption, vat


def _half_up_fen(x: Fraction) -> Decimal:
    fen = (x * 100 * 2 + 1) // 2  # floor(x*100 + 1/2) for non-negative x
    return D(fen).scaleb(-2)


def _near_half_fen(x: Fraction) -> bool:
    frac = (x * 100) % 1
    return abs(frac - Fraction(1, 2)) < Fraction(1, 10**20)


cents = st.integers(min_value=1, max_value=500_000)
gcodes = st.sampled_from([FOOD, MAKE_UP, JEWEL, "3303000020", "7116100000", "2106909090"])


@hyp_settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(gcodes, cents), min_size=1, max_size=5), st.integers(min_value=0, max_value=20_000))
def test_matches_exact_rational_arithmetic(lines, extra_cents):
    consumption, vat = _exact(lines, extra_cents)
    assume(not _near_half_fen(consumption) and not _near_half_fen(vat))
    tax = compute_tax([line(g, str(D(c).scaleb(-2))) for g, c in lines], D(extra_cents).scaleb(-2), None, RATES)
    assert tax.consumption == _half_up_fen(consumption)
    assert tax.vat == _half_up_fen(vat)
    assert tax.total == tax.consumption + tax.vat


@given(st.integers(min_value=0, max_value=10**12))
def test_vat_only_is_exact_even_on_half_fen(p_cents):
    # VAT in fen = p_cents * 0.091, rounded half up, in integer arithmetic.
    expected = D((p_cents * 91 * 2 + 1000) // 2000).scaleb(-2)
    assert compute_tax([line(FOOD, str(D(p_cents).scaleb(-2)))], None, None, RATES).vat == expected
