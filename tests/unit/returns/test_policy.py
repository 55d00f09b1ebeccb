"""DOMAIN §5's time windows and amounts (services/returns/policy.py), at their boundaries."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import codes
from services.returns import policy
from services.returns.policy import Windows

from .samples import RATES, at

D = Decimal
W = Windows()
RELEASE = at("20250310100000")
LINES = [{"gnum": 1, "qty": D(2), "totalPrice": D("200.00")}, {"gnum": 2, "qty": D(1), "totalPrice": D("100.00")}]


# --- days and windows ------------------------------------------------------------------------

@pytest.mark.parametrize("event, day", [
    ("20250310235959", 0), ("20250311000000", 1), ("20250409235959", 30), ("20250410000000", 31),
    ("20250424235959", 45), ("20250425000000", 46),
])
def test_a_day_is_a_china_calendar_day_counted_from_the_release_day(event, day):
    assert policy.day_after_release(RELEASE, at(event)) == day


def test_a_return_applied_for_on_day_30_passes_and_on_day_31_is_late():
    assert policy.applied_in_time(RELEASE, at("20250409235959"), W)
    assert not policy.applied_in_time(RELEASE, at("20250410000000"), W)


def test_goods_arriving_on_day_45_pass_and_on_day_46_are_late():
    assert policy.arrived_in_time(RELEASE, at("20250424235959"), W)
    assert not policy.arrived_in_time(RELEASE, at("20250425000000"), W)


def test_calendar_days_not_elapsed_24_hour_periods_decide():
    late_release = at("20250310230000")
    # 29 days 23 hours after the release, but on calendar day 30: passes
    assert policy.applied_in_time(late_release, at("20250409220000"), W)
    # 30 days 2 hours after the release, but on calendar day 31: late
    assert not policy.applied_in_time(late_release, at("20250410010000"), W)


def test_days_count_in_china_time_not_utc():
    early_release = at("20250310070000")  # 2025-03-09 23:00 UTC
    applied = at("20250409090000")        # 2025-04-09 01:00 UTC: day 31 in UTC dates, day 30 in China
    assert policy.day_after_release(early_release, applied) == 30
    assert policy.applied_in_time(early_release, applied, W)


def test_the_arrival_deadline_is_china_midnight_starting_day_46():
    assert policy.arrival_deadline(RELEASE, W) == at("20250425000000")
    assert policy.arrival_deadline(at("20250310235959"), W) == at("20250425000000")


def test_the_windows_are_settings(monkeypatch):
    monkeypatch.setenv("SANDAN_RETURN_APPLY_DAYS", "7")
    monkeypatch.setenv("SANDAN_RETURN_ARRIVAL_DAYS", "10")
    windows = Windows.from_env()
    assert windows == Windows(7, 10)
    assert policy.applied_in_time(RELEASE, at("20250317120000"), windows)
    assert not policy.applied_in_time(RELEASE, at("20250318000000"), windows)
    assert policy.arrival_deadline(RELEASE, windows) == at("20250321000000")


# --- items -----------------------------------------------------------------------------------

DECLARED = {1: D(2), 2: D(1)}


def _lines(*pairs):
    return [{"gnum": g, "qty": D(q)} for g, q in pairs]


def test_returning_everything_declared_passes():
    assert policy.item_failures(DECLARED, {}, {}, _lines((1, 2), (2, 1))) == []


@pytest.mark.parametrize("lines, field", [
    (_lines((3, 1)), "InvtRefundList[1]/gnum"),
    (_lines((1, 0)), "InvtRefundList[1]/qty"),
    (_lines((1, -1)), "InvtRefundList[1]/qty"),
    (_lines((1, 3)), "InvtRefundList/qty"),
    (_lines((1, "1.5"), (1, 1)), "InvtRefundList/qty"),  # lines naming one gnum add up
    ([], "InvtRefundList"),
])
def test_unknown_lines_non_positive_or_excess_quantities_are_return_items(lines, field):
    failures = policy.item_failures(DECLARED, {}, {}, lines)
    assert [(f.code, f.field) for f in failures] == [(codes.RETURN_ITEMS, field)]


def test_quantities_are_net_of_returned_and_of_requests_still_waiting():
    assert policy.item_failures(DECLARED, {1: D(1)}, {}, _lines((1, 1))) == []
    assert policy.item_failures(DECLARED, {1: D(1)}, {}, _lines((1, 2)))
    assert policy.item_failures(DECLARED, {}, {1: D(1)}, _lines((1, 2)))
    assert policy.item_failures(DECLARED, {1: D(1)}, {1: D(1)}, _lines((1, 1)))
    assert policy.item_failures(DECLARED, {1: D(1)}, {1: D(1)}, _lines((2, 1))) == []


def test_every_failing_line_is_named():
    failures = policy.item_failures(DECLARED, {}, {}, _lines((9, 1), (2, 0), (1, 5)))
    assert [f.field for f in failures] == ["InvtRefundList[1]/gnum", "InvtRefundList[2]/qty", "InvtRefundList/qty"]


# --- amounts ---------------------------------------------------------------------------------

def _refund(returned_before, returning, tax="28.21", taxable="310.00", voided=D(0), restored=D(0), lines=LINES):
    return policy.refund_amounts(lines, returned_before, returning, tax_total=D(tax), taxable_value=D(taxable),
                                 voided_before=voided, restored_before=restored, rates=RATES)


def test_a_partial_return_gives_back_its_lines_share_rounded_to_the_fen():
    # LINES keep no HS code (a declaration learned by bucket version 2): the tax is shared by value
    refund = _refund({}, {1: D(1)})  # 100 of 300
    assert refund == policy.Refund(tax=D("9.40"), quota=D("103.33"))  # 9.4033..., 103.333...


def test_shares_round_half_up():
    lines = [{"gnum": 1, "qty": D(1), "totalPrice": D(50)}, {"gnum": 2, "qty": D(1), "totalPrice": D(50)}]
    assert _refund({}, {1: D(1)}, tax="0.05", taxable="0.05", lines=lines) == policy.Refund(D("0.03"), D("0.03"))


def test_the_return_that_completes_the_declaration_takes_exactly_what_is_left():
    first = _refund({}, {1: D(1)})
    last = _refund({1: D(1)}, {1: D(1), 2: D(1)}, voided=first.tax, restored=first.quota)
    assert last == policy.Refund(tax=D("18.81"), quota=D("206.67"))
    assert first.tax + last.tax == D("28.21") and first.quota + last.quota == D("310.00")


def test_a_partial_share_never_exceeds_what_is_left():
    six = [{"gnum": g, "qty": D(1), "totalPrice": D(10)} for g in range(1, 7)]
    voided, returned, parts = D(0), {}, []
    for gnum in range(1, 7):  # each sixth of 0.03 rounds up to 0.01
        refund = _refund(returned, {gnum: D(1)}, tax="0.03", taxable="0.03", voided=voided, restored=voided,
                         lines=six)
        parts.append(refund.tax)
        voided += refund.tax
        returned[gnum] = D(1)
    assert parts == [D("0.01"), D("0.01"), D("0.01"), D(0), D(0), D(0)]


def test_free_lines_share_by_line_count():
    gifts = [{"gnum": 1, "qty": D(1), "totalPrice": D(0)}, {"gnum": 2, "qty": D(1), "totalPrice": D(0)}]
    assert _refund({}, {1: D(1)}, tax="1.30", taxable="10.00", lines=gifts) == policy.Refund(D("0.65"), D("5.00"))


def _return_everything(declared: list[dict], tax: D, taxable: D, seed) -> tuple[D, D]:
    """Every line returned in random parts, each part a completed return: (tax voided, quota restored)."""
    left = {line["gnum"]: int(line["qty"]) for line in declared}
    returned, voided, restored = {}, D(0), D(0)
    while any(left.values()):
        gnum = seed.choice([g for g, q in left.items() if q])
        qty = seed.randint(1, left[gnum])
        left[gnum] -= qty
        refund = policy.refund_amounts(declared, dict(returned), {gnum: D(qty)}, tax_total=tax, taxable_value=taxable,
                                       voided_before=voided, restored_before=restored, rates=RATES)
        assert refund.tax >= 0 and refund.quota >= 0
        voided, restored = voided + refund.tax, restored + refund.quota
        assert voided <= tax and restored <= taxable, "a part exceeded what was left"
        returned[gnum] = returned.get(gnum, D(0)) + D(qty)
    return voided, restored


line_st = st.tuples(st.integers(1, 5), st.integers(1, 500000))  # qty, price in fen


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(line_st, min_size=1, max_size=5), tax_fen=st.integers(0, 200000),
       extra_fen=st.integers(0, 5000), seed=st.randoms(use_true_random=False))
def test_partial_returns_of_a_whole_declaration_add_up_to_the_bill_exactly(lines, tax_fen, extra_fen, seed):
    declared = [{"gnum": g, "qty": D(q), "totalPrice": D(p).scaleb(-2)} for g, (q, p) in enumerate(lines, 1)]
    tax, taxable = D(tax_fen).scaleb(-2), sum((line["totalPrice"] for line in declared), D(extra_fen).scaleb(-2))
    assert _return_everything(declared, tax, taxable, seed) == (tax, taxable)


# --- a return voids its own lines' tax (DOMAIN §5) -------------------------------------------

MAKEUP_AND_FOOD = [{"gnum": 1, "qty": D(1), "totalPrice": D("1000.00"), "gcode": "3304990099"},
                   {"gnum": 2, "qty": D(4), "totalPrice": D("1000.00"), "gcode": "1901101000"}]
# DOMAIN §3: the make-up line alone is consumption 123.53 + VAT 107.06 = 230.59; the food line
# 1000 × 13% × 0.7 = 91.00; the declaration's head: consumption 123.53, VAT 198.06, total 321.59
MIXED_TAX, MIXED_P = "321.59", "2000.00"


def test_returning_the_make_up_line_voids_its_own_consumption_tax_and_vat_not_a_value_share():
    refund = _refund({}, {1: D(1)}, tax=MIXED_TAX, taxable=MIXED_P, lines=MAKEUP_AND_FOOD)
    assert refund == policy.Refund(tax=D("230.59"), quota=D("1000.00"))  # a value share would be 160.80
    last = _refund({1: D(1)}, {2: D(4)}, tax=MIXED_TAX, taxable=MIXED_P, voided=refund.tax, restored=refund.quota,
                   lines=MAKEUP_AND_FOOD)
    assert last == policy.Refund(tax=D("91.00"), quota=D("1000.00"))


def test_a_part_of_a_line_voids_that_part_of_the_lines_exact_tax_rounded_once():
    # one of four food units: 91.00 / 4 = 22.75 exactly; the make-up line untouched
    assert _refund({}, {2: D(1)}, tax=MIXED_TAX, taxable=MIXED_P, lines=MAKEUP_AND_FOOD).tax == D("22.75")
    # a third of the make-up line's exact 230.588235…: 76.862745… → 76.86 (not a third of 230.59, 76.863…)
    three = [{**MAKEUP_AND_FOOD[0], "qty": D(3)}, MAKEUP_AND_FOOD[1]]
    assert _refund({}, {1: D(1)}, tax=MIXED_TAX, taxable=MIXED_P, lines=three).tax == D("76.86")


def test_freight_shares_follow_the_line_into_its_tax():
    # goods 300 + freight 10 (DOMAIN §3 worked example), one make-up line of 100 beside 200 of food:
    # the make-up line's P share is 310 × 100/300 = 103.333…: consumption 103.333…/0.85 × 0.15 × 0.7
    # = 12.7647… and VAT (103.333… + 18.2352…) × 0.13 × 0.7 = 11.0627…: 23.8274… (head 12.76 + 29.87)
    lines = [{"gnum": 1, "qty": D(1), "totalPrice": D("100.00"), "gcode": "3304100000"},
             {"gnum": 2, "qty": D(1), "totalPrice": D("200.00"), "gcode": "1901101000"}]
    assert _refund({}, {1: D(1)}, tax="42.63", taxable="310.00", lines=lines).tax == D("23.83")


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 500000), st.sampled_from(
    ["3304990099", "7113110000", "1901101000", "6109100010"])), min_size=1, max_size=5),
       freight_fen=st.integers(0, 5000), seed=st.randoms(use_true_random=False))
def test_returns_by_own_lines_of_a_whole_declaration_add_up_to_its_tax_exactly(lines, freight_fen, seed):
    from services.common.tax import compute_tax
    declared = [{"gnum": g, "qty": D(q), "totalPrice": D(p).scaleb(-2), "gcode": code}
                for g, (q, p, code) in enumerate(lines, 1)]
    head = compute_tax(declared, D(freight_fen).scaleb(-2), D(0), RATES)
    assert _return_everything(declared, head.total, head.taxable_value, seed) == (head.total, head.taxable_value)


def test_a_bucket_written_by_version_2_reads_back_without_hs_codes_and_shares_the_tax_by_value():
    import io

    import fastavro

    from services.common.avro import codec
    from services.returns.inputs import declaration_from_verdict
    from . import samples as s

    wire = codec()
    old = next(e for e in wire._superseded["sandan.ReturnsBucket"] if e.version == 2)
    decl = declaration_from_verdict(s.verdict())
    for line in decl["lines"]:
        del line["gcode"]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, old.parsed, old.to_wire({"orderNo": s.ORDER, "declarations": [decl], "held": []}))
    name, bucket = wire.decode(old.header + body.getvalue())
    lines = bucket["declarations"][0]["lines"]
    assert name == "sandan.ReturnsBucket" and [line["gcode"] for line in lines] == [None, None]
    assert policy.returned_tax(lines, {1: D(1)}, D("310.00"), RATES) is None
    assert _refund({}, {1: D(1)}, lines=lines).tax == D("9.40")  # 28.21 × 100/300
    assert wire.decode(wire.encode("sandan.ReturnsBucket", bucket)) == (name, bucket)  # written as version 3
