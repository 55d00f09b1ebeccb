"""Import tax (DOMAIN §3): worked examples to the fen, pro-rata allocation, rounding."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import assume, given, settings as hyp_settings, strategies as st

from services.common.rates import RateTable, load_rates
from services.order_match.rules import RuleSettings, declaration_tax
from services.common.tax import TaxResult, compute_tax

from tests.unit.order_match.samples import base_documents, make_consistent, run

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


# --- exact arithmetic: shares and line taxes are fractions, each kind rounded once ---------

def test_an_exact_half_fen_across_two_rates_rounds_up():
    # P = 578.85; the make-up line's share is 578.85 x 120/280 = 248.0785714..., its consumption
    # tax 248.0785714... / 0.85 x 0.15 x 0.7 = 30.645 exactly: 30.65 (a 34-digit split gave 30.64).
    tax = compute_tax([line(MAKE_UP, "120"), line("6109100011", "160")], D("298.85"), None, RATES)
    share = Fraction("578.85") * 120 / 280
    assert share / Fraction("0.85") * Fraction("0.15") * Fraction("0.7") == Fraction("30.645")
    vat = (share / Fraction("0.85") + Fraction("578.85") * 160 / 280) * Fraction("0.091")
    assert (tax.consumption, tax.vat, tax.total) == (D("30.65"), _half_up_fen(vat), D("30.65") + _half_up_fen(vat))
    assert tax.vat == D("56.66")


def test_an_exact_half_fen_of_a_single_consumption_rate_rounds_up():
    # 0.85 of make-up: 0.85 / 0.85 x 0.15 x 0.7 = 0.105 exactly.
    assert compute_tax([line(MAKE_UP, "0.85")], None, None, RATES).consumption == D("0.11")


def test_many_small_lines_keep_the_half_fen():
    # 3 x 40 of make-up and 4 x 40 of T-shirts: the same declaration as two lines.
    lines = [line(MAKE_UP, "40")] * 3 + [line("6109100011", "40")] * 4
    assert compute_tax(lines, D("298.85"), None, RATES).consumption == D("30.65")


def test_negative_amounts_round_away_from_zero_and_never_raise():
    # The reader refuses a minus sign; the tax of such a record must still not crash the engine.
    tax = compute_tax([line(FOOD, "-15")], None, None, RATES)
    assert (tax.vat, tax.taxable_value) == (D("-1.37"), D("-15"))
    tax = compute_tax([line(MAKE_UP, "10"), line(FOOD, "-10")], D("5"), None, RATES)  # lines sum to 0: even split
    assert tax == compute_tax([line(MAKE_UP, "1"), line(FOOD, "1")], D("3"), None, RATES)


def test_amounts_that_are_not_finite_numbers_count_as_zero():
    tax = compute_tax([line(FOOD, "300"), {"gcode": FOOD, "totalPrice": D("NaN")}], D("10"), "oops", RATES)
    assert (tax.vat, tax.taxable_value) == (D("28.21"), D("310"))


# --- property: agrees with an independent exact computation, line by line -----------------

SEVEN_TENTHS = Fraction(7, 10)


def _oracle(lines: list[tuple[tuple[Fraction, Fraction], Fraction]], p: Fraction) -> tuple[Fraction, Fraction]:
    """Exact consumption tax and VAT: each line's share of P (pro rata to its price, evenly when
    every price is 0) taxed at its own rates, summed, not rounded."""
    weight = sum(price for _, price in lines)
    consumption = vat = Fraction(0)
    for (v, c), price in lines:
        share = p * price / weight if weight else p / len(lines)
        excise = share / (1 - c) * c
        consumption += excise * SEVEN_TENTHS
        vat += (share + excise) * v * SEVEN_TENTHS
    return consumption, vat


def _half_up_fen(x: Fraction) -> Decimal:
    fen = (abs(x) * 100 * 2 + 1) // 2  # floor(|x|*100 + 1/2)
    return D(-fen if x < 0 else fen).scaleb(-2)


def _on_half_fen(x: Fraction) -> bool:
    return (x * 100) % 1 == Fraction(1, 2)


def _decimal(x: Fraction) -> Decimal:
    """An exact decimal of at most 5 fraction digits (the strategies only build such values)."""
    units = x * 10**5
    assert units.denominator == 1
    return D(units.numerator).scaleb(-5)


# Rate pairs (v, c) of a table made up for the test: several VAT rates, consumption rates 0-30%.
VAT_RATES = ("0.13", "0.09", "0.06", "0.17")
CONSUMPTION_RATES = ("0", "0.05", "0.1", "0.15", "0.3", "0.36")
TABLE = RateTable({f"{i}{j}": (D(v), D(c)) for i, v in enumerate(VAT_RATES) for j, c in enumerate(CONSUMPTION_RATES)}
                  | {"": (D("0.13"), D("0"))})
rate_codes = st.sampled_from([f"{i}{j}00000000" for i in range(len(VAT_RATES)) for j in range(len(CONSUMPTION_RATES))])
amounts = st.integers(min_value=0, max_value=10**10).map(lambda units: Fraction(units, 10**5))  # 0..100,000.00000


def _rates_of(gcode: str) -> tuple[Fraction, Fraction]:
    v, c = TABLE.lookup(gcode)
    return Fraction(v), Fraction(c)


def _check(gcodes_prices: list[tuple[str, Fraction]], freight: Fraction, insured: Fraction,
           goods: Fraction | None = None) -> tuple[Fraction, Fraction]:
    p = (sum(price for _, price in gcodes_prices) if goods is None else goods) + freight + insured
    consumption, vat = _oracle([(_rates_of(g), price) for g, price in gcodes_prices], p)
    tax = compute_tax([line(g, str(_decimal(price))) for g, price in gcodes_prices], _decimal(freight),
                      _decimal(insured), TABLE, goods_value=None if goods is None else _decimal(goods))
    assert tax.taxable_value == _decimal(p)
    assert (tax.consumption, tax.vat) == (_half_up_fen(consumption), _half_up_fen(vat))
    assert tax.total == tax.consumption + tax.vat + tax.customs
    return consumption, vat


@hyp_settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(rate_codes, amounts), min_size=1, max_size=8), amounts, amounts,
       st.one_of(st.none(), amounts))
def test_matches_an_exact_fraction_oracle(lines, freight, insured, goods):
    _check(lines, freight, insured, goods)


@st.composite
def on_a_half_fen(draw):
    """Lines and a freight chosen so that one tax kind lands exactly on half a fen.

    With k the rate factor of a kind (c/(1-c) or v/(1-c)), the kind is 0.7·P·Σwₗkₗ/W; P is
    then the odd multiple of half a fen divided by 0.7·Σwₗkₗ/W that has at most 5 decimals."""
    lines = draw(st.lists(st.tuples(rate_codes, st.integers(min_value=1, max_value=10**9)), min_size=1, max_size=5))
    lines = [(g, Fraction(units, 10**5)) for g, units in lines]
    kind = draw(st.sampled_from(("consumption", "vat")))
    weight = sum(price for _, price in lines)
    per_p = sum(price * (c if kind == "consumption" else v) / (1 - c)
                for (v, c), price in ((_rates_of(g), price) for g, price in lines)) * SEVEN_TENTHS / weight
    assume(per_p != 0)
    step = Fraction(1, 200) / per_p  # P for half a fen
    odd = step.denominator
    while odd % 2 == 0:
        odd //= 2
    while odd % 5 == 0:
        odd //= 5
    # P = step x n with n odd and a multiple of the non-decimal part of step's denominator
    n = odd * (2 * draw(st.integers(min_value=0, max_value=10**6)) + 1)
    p = step * n
    assume((p * 10**5).denominator == 1 and p >= weight)
    insured = Fraction(draw(st.integers(min_value=0, max_value=int((p - weight) * 10**5))), 10**5)
    return lines, p - weight - insured, insured, kind


@hyp_settings(max_examples=300, deadline=None)
@given(on_a_half_fen())
def test_an_exact_half_fen_always_rounds_up(case):
    lines, freight, insured, kind = case
    consumption, vat = _check(lines, freight, insured)
    assert _on_half_fen(consumption if kind == "consumption" else vat)


@given(st.integers(min_value=0, max_value=10**12))
def test_vat_only_is_exact_even_on_half_fen(p_cents):
    # VAT in fen = p_cents * 0.091, rounded half up, in integer arithmetic.
    expected = D((p_cents * 91 * 2 + 1000) // 2000).scaleb(-2)
    assert compute_tax([line(FOOD, str(D(p_cents).scaleb(-2)))], None, None, RATES).vat == expected


# --- TAX_TOTAL compares with the exactly rounded tax ----------------------------------------

def _half_fen_declaration(tax_total_above: Decimal) -> dict:
    """The sample declaration as make-up 120 + T-shirt 160 + freight 298.85 (tax 30.65 + 56.66),
    declaring the tax plus ``tax_total_above``."""
    docs = base_documents()
    for kind, gcode_key in (("order", None), ("inventory", "gcode")):
        for entry, (gcode, price) in zip(docs[kind]["lines"], ((MAKE_UP, "120.00"), ("6109100011", "160.00"))):
            entry["qty"], entry["price"], entry["totalPrice"] = D(1), D(price), D(price)
            if gcode_key:
                entry[gcode_key] = gcode
    docs["order"]["freight"] = docs["inventory"]["freight"] = docs["logistics"]["freight"] = D("298.85")
    make_consistent(docs, RATES)
    assert docs["order"]["taxTotal"] == D("87.31")
    docs["order"]["taxTotal"] += tax_total_above
    docs["order"]["acturalPaid"] += tax_total_above
    docs["payment"]["amountPaid"] = docs["order"]["acturalPaid"]
    return docs


def test_the_exact_tax_plus_the_tolerance_verifies():
    verdict = run(_half_fen_declaration(D("0.05")), RATES, RuleSettings())
    assert verdict.status == "verified", verdict.failures
    assert verdict.tax.total == D("87.31")


def test_a_fen_beyond_the_tolerance_is_tax_total():
    verdict = run(_half_fen_declaration(D("0.06")), RATES, RuleSettings())
    assert [f.code for f in verdict.failures] == ["TAX_TOTAL"]
