"""What `sandan check` prints of amounts: what was computed, to the precision it has; and a
``--year-to-date`` file with a value that is no amount is one error line naming file, line
and column (exit 2), never a traceback."""
from __future__ import annotations

import argparse
import copy
from decimal import Decimal

import pytest

from services.cli import check as check_cli
from services.common import pii
from services.common.ceb.writer import write_message
from services.common.money import MAX_AMOUNT, amount_str
from services.common import codes
from services.order_match.offline import YearToDateError, check, load_year_to_date, verdict_line
from services.order_match.rules import RuleSettings

from .samples import BUYER, base_documents, make_consistent, set_line

D = Decimal


def _check(docs: dict) -> dict:
    [line] = check([docs[k] for k in ("order", "payment", "logistics", "inventory")], settings=RuleSettings())
    return line


def test_a_taxable_value_with_more_than_two_decimals_is_printed_as_it_is(rates):
    docs = base_documents()
    set_line(docs, 0, price=D("2445.002"), qty=D(2))  # goods 4,890.004 + 100 + freight 10
    make_consistent(docs, rates)
    line = _check(docs)
    assert [f["code"] for f in line["failures"]] == [codes.SINGLE_LIMIT]
    assert line["taxableValue"] == "5000.004"
    assert line["tax"]["total"] == str(docs["order"]["taxTotal"])


def test_whole_amounts_keep_two_decimals(rates):
    line = _check(base_documents())
    assert (line["taxableValue"], line["tax"]) == ("310.00", {"customs": "0.00", "consumption": "0.00",
                                                                "vat": "28.21", "total": "28.21"})


def test_amounts_beyond_a_record_print_as_not_computed_not_as_zero():
    docs = base_documents()
    docs["order"]["freight"] = docs["inventory"]["freight"] = MAX_AMOUNT
    line = _check(docs)
    assert codes.AMOUNT_RANGE in {f["code"] for f in line["failures"]}
    assert line["tax"] is None and line["taxableValue"] is None


def test_an_incomplete_line_has_no_amounts():
    record = {"ebpCode": "E", "orderNo": "O", "status": "incomplete", "failures": [], "missing": ["payment"],
              "customsTax": D(0), "consumptionTax": D(0), "valueAddedTax": D(0), "taxTotal": D(0),
              "taxableValue": D(0)}
    assert verdict_line(record)["tax"] is None


@pytest.mark.parametrize("text, shown", [("5000", "5000.00"), ("5000.00400", "5000.004"), ("0.00001", "0.00001"),
                                         ("1E+3", "1000.00"), ("28.2", "28.20")])
def test_amount_str(text, shown):
    assert amount_str(D(text)) == shown


# --- --year-to-date -------------------------------------------------------------------------

def _csv(tmp_path, *rows: str, header: str = "buyerIdType,buyerIdNumber,year,amount"):
    path = tmp_path / "ytd.csv"
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("amount", ["NaN", "nan", "inf", "-Infinity", "1e3", "1E3", "-5", "+5", "", '"1,000"',
                                    "12.123456", "0x10", "５"])
def test_an_amount_that_is_no_plain_decimal_is_refused_naming_line_and_column(tmp_path, amount):
    path = _csv(tmp_path, f"1,{BUYER['id']},2025,100", f"1,{BUYER['id']},2025,{amount}")
    with pytest.raises(YearToDateError) as refused:
        load_year_to_date(path)
    cell = amount.strip('"')  # the CSV quotes go
    assert str(refused.value).startswith(f"{path}: line 3, column 4 (amount): {cell!r} is not an amount")


def test_an_unquoted_thousands_separator_is_one_field_too_many(tmp_path):
    with pytest.raises(YearToDateError, match=r"line 2, column 5: 5 fields, the header names 4"):
        load_year_to_date(_csv(tmp_path, f"1,{BUYER['id']},2025,1,000"))


@pytest.mark.parametrize("year", ["20x6", "", "-2025", "2025.0", "99999"])
def test_a_year_that_is_no_four_digit_year_is_refused(tmp_path, year):
    path = _csv(tmp_path, f"1,{BUYER['id']},{year},100")
    with pytest.raises(YearToDateError, match=r"line 2, column 3 \(year\)"):
        load_year_to_date(path)


def test_a_short_row_or_a_missing_column_is_refused(tmp_path):
    with pytest.raises(YearToDateError, match=r"line 2, column 4 \(amount\)"):
        load_year_to_date(_csv(tmp_path, f"1,{BUYER['id']},2025"))
    with pytest.raises(YearToDateError, match="missing amount"):
        load_year_to_date(_csv(tmp_path, f"{BUYER['id']},2025", header="buyerIdNumber,year"))


def test_the_seed_is_keyed_by_the_normalised_number_whatever_the_type(tmp_path):
    number = "33010619880315771X"
    path = _csv(tmp_path, f"1,{number},2025,100.5", f"2, {number.lower()} ,2025,0.00001", f"1,{number},2026,7",
                header="buyerIdType,buyerIdNumber,year,amount")
    assert load_year_to_date(path) == {(pii.buyer_key(number), 2025): D("100.50001"),
                                       (pii.buyer_key(number), 2026): D(7)}
    # the type column may be left out
    assert load_year_to_date(_csv(tmp_path, f"{number},2025,1", header="buyerIdNumber,year,amount")) == \
        {(pii.buyer_key(number), 2025): D(1)}


def test_sandan_check_refuses_a_nan_year_to_date_with_one_line_and_exit_2(tmp_path, capsys):
    docs = base_documents()
    for kind, code in (("order", "CEB311"), ("payment", "CEB411"), ("logistics", "CEB511"), ("inventory", "CEB621")):
        (tmp_path / f"{code}.xml").write_bytes(write_message(code, [copy.deepcopy(docs[kind])]))
    path = _csv(tmp_path, f"1,{BUYER['id']},2025,NaN")
    rc = check_cli.run(argparse.Namespace(paths=[str(tmp_path)], year_to_date=str(path)))
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.splitlines() == [f"sandan check: {path}: line 2, column 4 (amount): 'NaN' is not an amount"
                                " (plain digits with an optional fraction of at most 5 digits: no sign, exponent,"
                                " NaN or infinity)"]
    path = _csv(tmp_path, f"1,{BUYER['id']},2025,25690.01")  # + P 310 is a fen over the annual limit
    assert check_cli.run(argparse.Namespace(paths=[str(tmp_path)], year_to_date=str(path))) == 0
    assert '"code": "ANNUAL_LIMIT"' in capsys.readouterr().out
