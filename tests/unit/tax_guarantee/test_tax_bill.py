"""The tax bill (CEB816) of a cleared declaration and its status changes (CEB818): lines that add
up to the head to the fen, numbers a replay gives again, and the engine sending them once."""
from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from services.common.avro import codec
from services.common.money import FEN, round_fen
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import RateTable, load_rates
from services.common import tax_lines
from services.tax_guarantee import tax_bill
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.store import MemoryAccountStore

from .samples import CODE, NOW_MS, command_record, verdict

RATES = load_rates()
INVT_NO = "29912025I000000123"
MAKE_UP, SHIRT, RING = "3304990099", "6109100021", "7113191900"


def billed_verdict(decl_no: str, lines: list[tuple[str, str]], *, freight="0", consumption=None, vat=None,
                   invt_no=INVT_NO) -> dict:
    """A verified declaration whose inventory has ``lines`` of (gcode, totalPrice); the head's
    taxes are what the match computes (exact sum per kind, rounded half-up) unless given."""
    v = verdict(decl_no)
    v["inventory"] = dict(v["inventory"], invtNo=invt_no, customsCode="2991", preNo="B20250615000000001",
                          lines=[{"gnum": n, "gcode": gcode, "totalPrice": Decimal(price)}
                                 for n, (gcode, price) in enumerate(lines, 1)])
    taxable = sum(Decimal(p) for _, p in lines) + Decimal(freight)
    exact_c, exact_v = exact_taxes(taxable, lines)
    v.update(taxableValue=taxable, customsTax=Decimal("0.00"),
             consumptionTax=round_fen(Decimal(consumption if consumption is not None else _dec(exact_c))),
             valueAddedTax=round_fen(Decimal(vat if vat is not None else _dec(exact_v))))
    v["taxTotal"] = v["consumptionTax"] + v["valueAddedTax"]
    return v


def exact_taxes(taxable, lines) -> tuple[Fraction, Fraction]:
    weights = [Fraction(Decimal(p)) for _, p in lines]
    if not sum(weights):  # every line free: P splits evenly
        weights = [Fraction(1)] * len(lines)
    consumption = vat = Fraction(0)
    for (gcode, _), weight in zip(lines, weights):
        v, c = (Fraction(r) for r in RATES.lookup(gcode))
        share = Fraction(taxable) * weight / sum(weights)
        excise = share * c / (1 - c)
        consumption += excise * Fraction(7, 10)
        vat += (share + excise) * v * Fraction(7, 10)
    return consumption, vat


def _dec(value: Fraction) -> str:
    # half-up to the fen, exactly (a Decimal of the fraction could fall just below a half)
    fen = (value * 100 * 2 + 1) // 2
    return str(Decimal(fen) / 100)


def column(lines, name):
    return [line[name] for line in lines]


def test_the_issue_example_lines_add_up_to_the_exact_half_fen_head():
    # a 3304 line of 120 and a 6109 line of 160, freight 298.85: exact consumption tax 30.645 → 30.65
    v = billed_verdict("1", [(MAKE_UP, "120"), (SHIRT, "160")], freight="298.85")
    assert v["consumptionTax"] == Decimal("30.65")
    lines = tax_lines.line_taxes(v, RATES)
    assert column(lines, "consumptionTax") == [Decimal("30.65"), Decimal("0.00")]  # the shirt bears none
    assert sum(column(lines, "valueAddedTax")) == v["valueAddedTax"]
    assert column(lines, "taxPrice") == [Decimal("248.08"), Decimal("330.77")]  # 248.0786 : 330.7714
    assert sum(column(lines, "taxPrice")) == v["taxableValue"]
    assert column(lines, "customsTax") == [Decimal("0.00")] * 2


def test_the_left_over_fen_goes_to_the_largest_remainder_and_a_tie_to_the_lower_gnum():
    # exact amounts 0.033, 0.033, 0.034 CNY (thousandths)
    assert tax_lines.apportion(Decimal("0.10"), [33, 33, 34], 1000) == [Decimal("0.03"), Decimal("0.03"),
                                                                       Decimal("0.04")]
    assert tax_lines.apportion(Decimal("0.10"), [35, 35, 30], 1000) == [Decimal("0.04"), Decimal("0.03"),
                                                                       Decimal("0.03")]
    # a total the exact amounts do not round to: split in proportion to them, or evenly
    assert tax_lines.apportion(Decimal("0.10"), [1, 1, 1], 1) == [Decimal("0.04"), Decimal("0.03"), Decimal("0.03")]
    assert tax_lines.apportion(Decimal("1.00"), [1, 2, 0], 1) == [Decimal("0.33"), Decimal("0.67"), Decimal("0.00")]
    assert tax_lines.apportion(Decimal("0.02"), [0, 0], 1) == [Decimal("0.01"), Decimal("0.01")]
    assert tax_lines.apportion(Decimal("0.00001"), [1, 3], 1) == [Decimal(0), Decimal("0.00001")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([MAKE_UP, SHIRT, RING, "3303000000"]),
                          st.integers(min_value=0, max_value=300_000)), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=50_000))
def test_every_line_is_within_a_fen_of_its_exact_tax_and_the_lines_add_up_to_the_head(lines, freight_fen):
    lines = [(gcode, str(Decimal(fen) / 100)) for gcode, fen in lines]
    v = billed_verdict("1", lines, freight=str(Decimal(freight_fen) / 100))
    taxed = tax_lines.line_taxes(v, RATES)
    for name in ("customsTax", "valueAddedTax", "consumptionTax", "taxPrice"):
        assert sum(column(taxed, name)) == v[{"taxPrice": "taxableValue"}.get(name, name)]
        assert all(value == round_fen(value) and value >= 0 for value in column(taxed, name))
    if sum(Decimal(p) for _, p in lines):
        weight = sum(Fraction(Decimal(p)) for _, p in lines)
        for (gcode, price), line in zip(lines, taxed):
            share = Fraction(v["taxableValue"]) * Fraction(Decimal(price)) / weight
            val, c = (Fraction(r) for r in RATES.lookup(gcode))
            excise = share * c / (1 - c)
            assert abs(Fraction(line["consumptionTax"]) - excise * Fraction(7, 10)) < Fraction(FEN)
            assert abs(Fraction(line["valueAddedTax"]) - (share + excise) * val * Fraction(7, 10)) < Fraction(FEN)


def test_a_head_that_disagrees_with_the_rates_is_still_split_exactly():
    # the match used another rate table: the head is what was deducted and the lines follow it
    v = billed_verdict("1", [(SHIRT, "100"), (SHIRT, "100")], consumption="3.01")
    assert sum(column(tax_lines.line_taxes(v, RATES), "consumptionTax")) == Decimal("3.01")


def test_the_bill_is_addressed_to_the_assure_code_and_numbered_from_the_invt_no():
    v = billed_verdict("1", [(MAKE_UP, "1000")])
    bill = tax_bill.tax_bill(v, NOW_MS, RATES)
    assert (bill["message"], bill["receiver"], bill["assureCode"], bill["taxStatus"]) == (
        "CEB816", CODE, CODE, "1")
    assert (bill["invtNo"], bill["taxNo"]) == (INVT_NO, INVT_NO + "01")
    assert (bill["consumptionTax"], bill["valueAddedTax"]) == (Decimal("123.53"), Decimal("107.06"))
    assert bill["returnTime"] == "20250615120000000"
    assert len(bill["guid"]) == 36 and bill["guid"] == bill["guid"].upper()
    assert tax_bill.tax_bill(v, NOW_MS, RATES) == bill  # the same declaration, the same bill
    assert tax_bill.tax_bill(billed_verdict("1", [(MAKE_UP, "1000")], invt_no=""), NOW_MS, RATES) is None


# --- the engine ----------------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def engine():
    processor = GuaranteeProcessor(store=MemoryAccountStore(), quota=MemoryQuotaStore(),
                                   thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30, rates=RATES)
    run(processor.on_command(command_record("register", kind="bank_guarantee", amount=Decimal(10_000),
                                            validFrom="20250101", validTo="20251231"), NOW_MS))
    return processor


def receipts(handled) -> list[dict]:
    return [o.record for o in handled.outputs if o.topic == "receipts"]


def sent(handled) -> list[bytes]:
    """The receipts as they go on the wire."""
    return [codec().encode("sandan.Receipt", r) for r in receipts(handled)]


def test_a_deduction_sends_the_bill_once_and_a_redelivery_the_same_bill_whatever_the_rates_now(engine):
    v = billed_verdict("1", [(MAKE_UP, "120"), (SHIRT, "160")], freight="298.85")
    first = run(engine.on_verdict(v, NOW_MS))
    [bill] = receipts(first)
    assert [o.key for o in first.outputs if o.topic == "receipts"] == [CODE.encode()]
    assert column(bill["taxLines"], "consumptionTax") == [Decimal("30.65"), Decimal("0.00")]
    engine.rates = RateTable({"": (Decimal("0.13"), Decimal("0.15"))})  # another table after a restart
    again = run(engine.on_verdict(v, NOW_MS + 60_000))
    assert again.replayed and sent(again) == sent(first)
    batch = run(engine.on_verdicts([v], NOW_MS + 120_000))
    assert sent(batch[0]) == sent(first)


def test_a_batch_of_deductions_sends_a_bill_each(engine):
    handled = run(engine.on_verdicts([billed_verdict(n, [(SHIRT, "100")]) for n in ("1", "2")], NOW_MS))
    assert [r["orderNo"] for h in handled for r in receipts(h)] == ["O1", "O2"]


def test_a_declaration_without_an_invt_no_is_cleared_without_a_bill(engine):
    handled = run(engine.on_verdict(billed_verdict("1", [(SHIRT, "100")], invt_no=""), NOW_MS))
    assert [o.topic for o in handled.outputs] == ["guarantee.ledger", "declarations.cleared"]


def test_a_void_in_full_sends_status_3_and_a_partial_void_nothing(engine):
    run(engine.on_verdict(billed_verdict("1", [(SHIRT, "1000")]), NOW_MS))  # VAT 91.00
    part = run(engine.on_command(command_record("void", commandId="v1", declarationId="EBP:O1",
                                                amount=Decimal("41")), NOW_MS))
    assert part.rejected_input is None and receipts(part) == []
    rest = run(engine.on_command(command_record("void", commandId="v2", declarationId="EBP:O1",
                                                amount=Decimal("50")), NOW_MS + 1000))
    [change] = receipts(rest)
    assert (change["message"], change["taxStatus"], change["taxNo"], change["invtNo"], change["receiver"]) == (
        "CEB818", "3", INVT_NO + "01", INVT_NO, CODE)
    assert change["entDutyNo"] is None and change["returnTime"] == "20250615120001000"
    again = run(engine.on_command(command_record("void", commandId="v2", declarationId="EBP:O1",
                                                 amount=Decimal("50")), NOW_MS + 9000))
    assert again.replayed and sent(again) == sent(rest)


def test_a_settlement_sends_status_2_with_the_payment_notice_for_each_bill(engine):
    for n in ("1", "2"):
        run(engine.on_verdict(billed_verdict(n, [(SHIRT, "100")], invt_no=f"29912025I00000000{n}"), NOW_MS))
    settle = command_record("settle", commandId="s1", entDutyNo="N2025", bills=["EBP:O1", "EBP:O2"])
    settled = run(engine.on_command(settle, NOW_MS))
    assert [(r["taxStatus"], r["entDutyNo"], r["taxNo"]) for r in receipts(settled)] == [
        ("2", "N2025", "29912025I00000000101"), ("2", "N2025", "29912025I00000000201")]
    refund = run(engine.on_command(command_record("void", commandId="v1", declarationId="EBP:O1",
                                                  amount=Decimal("9.10")), NOW_MS))
    assert refund.rejected_input is None and receipts(refund) == []  # a refund after payment: no status of its own


XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or Path(__file__).resolve().parents[3].parent / "shared" / "ceb" / "xsd")


def test_the_bill_and_its_status_changes_from_the_engine_validate_against_the_official_xsd(engine):
    from services.common.ceb import xsd
    from services.common.ceb.receipt_xml import receipt_messages

    lines = [(MAKE_UP, "120"), (SHIRT, "160"), (RING, "99.99")]
    for n in ("1", "2"):
        v = billed_verdict(n, lines, freight="298.85", invt_no=f"29912025I00000000{n}")
        v["inventory"]["guid"] = f"{n * 8}-0000-4000-8000-000000000000"
        run(engine.on_verdict(v, NOW_MS))
    written = receipts(run(engine.on_verdict(v, NOW_MS)))  # a replay: the recorded bill
    written += receipts(run(engine.on_command(command_record("void", commandId="v1", declarationId="EBP:O1",
                                                             amount=Decimal(1000)), NOW_MS)))
    written += receipts(run(engine.on_command(command_record("settle", commandId="s1", entDutyNo="N2025",
                                                             bills=["EBP:O2"]), NOW_MS)))
    assert [(r["message"], r["taxStatus"]) for r in written] == [("CEB816", "1"), ("CEB818", "3"), ("CEB818", "2")]
    schema = xsd.schema_for(XSD_DIR)
    for message in receipt_messages(written):
        assert xsd.problems(schema, etree.fromstring(message.xml)) == [], message.code


def test_a_guarantee_refusals_ceb622_carries_the_inventorys_numbers_and_validates_against_the_xsd(engine):
    from services.common.ceb import xsd
    from services.common.ceb.receipt_xml import receipt_messages

    v = billed_verdict("1", [(SHIRT, "200000")])  # VAT 18,200: more than the 10,000 guaranteed
    v["inventory"]["guid"] = "11111111-0000-4000-8000-000000000000"
    [refusal] = receipts(run(engine.on_verdict(v, NOW_MS)))
    assert (refusal["message"], refusal["returnStatus"]) == ("CEB622", "100")
    assert (refusal["preNo"], refusal["invtNo"]) == ("B20250615000000001", INVT_NO)
    [message] = receipt_messages([refusal])
    assert xsd.problems(xsd.schema_for(XSD_DIR), etree.fromstring(message.xml)) == []
