"""The rate table: shipped defaults, longest-prefix lookup, and errors that name the line."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.common.rates import SHIPPED, RateFileError, RateTable, load_rates

D = Decimal
HEADER = "hs_prefix,vat_rate,consumption_rate,description\n"


def write(tmp_path, text: str, name: str = "rates.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("gcode,expected", [
    ("3303000020", ("0.13", "0.15")),
    ("3304990099", ("0.13", "0.15")),
    ("7113191900", ("0.13", "0.10")),
    ("7114110000", ("0.13", "0.10")),
    ("7116100000", ("0.13", "0.10")),
    ("7115900000", ("0.13", "0")),   # neighbouring heading without consumption tax
    ("3305100000", ("0.13", "0")),   # shampoo is not make-up
    ("1901101000", ("0.13", "0")),
    (" 3304100091 ", ("0.13", "0.15")),
])
def test_shipped_table_follows_the_domain_default(gcode, expected):
    assert load_rates(SHIPPED).lookup(gcode) == (D(expected[0]), D(expected[1]))


def test_longest_matching_prefix_wins(tmp_path):
    table = load_rates(write(tmp_path, HEADER + ",0.13,0,default\n33,0.13,0.05,chapter\n"
                                               "3304,0.13,0.15,heading\n330499,0.09,0.20,subheading\n"))
    assert table.lookup("3304990099") == (D("0.09"), D("0.20"))
    assert table.lookup("3304100091") == (D("0.13"), D("0.15"))
    assert table.lookup("3301290000") == (D("0.13"), D("0.05"))
    assert table.lookup("9999999999") == (D("0.13"), D("0"))
    assert table.lookup("") == (D("0.13"), D("0"))


def test_rows_may_come_in_any_order_with_comments_blanks_and_a_bom(tmp_path):
    path = tmp_path / "rates.csv"
    path.write_bytes(("\ufeff" + HEADER + "# jewellery first\n7113,0.13,0.10,\"jewellery, gold\"\n\n"
                      ",0.13,0,default\n").encode("utf-8"))
    table = load_rates(path)
    assert table.lookup("7113191900") == (D("0.13"), D("0.10"))
    assert table.descriptions["7113"] == "jewellery, gold"
    assert len(table) == 2


def test_none_reads_the_setting_then_the_shipped_file(tmp_path, monkeypatch):
    custom = write(tmp_path, HEADER + ",0.09,0,custom default\n")
    monkeypatch.setenv("SANDAN_TAX_RATES", str(custom))
    assert load_rates().lookup("3304990099") == (D("0.09"), D("0"))
    monkeypatch.setenv("SANDAN_TAX_RATES", "")
    assert load_rates().lookup("3304990099") == (D("0.13"), D("0.15"))
    assert load_rates().source == str(SHIPPED)


@pytest.mark.parametrize("body,line,words", [
    ("hs,vat,consumption,description\n,0.13,0,x\n", 1, "header"),
    (HEADER + ",0.13,0,default\n3304,0.13,abc,make-up\n", 3, "consumption_rate"),
    (HEADER + ",0.13,0,default\n3304,13%,0.15,make-up\n", 3, "vat_rate"),
    (HEADER + ",0.13,0,default\n\n3304,0.13,1,make-up\n", 4, "below 1"),
    (HEADER + ",0.13,0,default\n3304,-0.1,0,make-up\n", 3, "at least 0"),
    (HEADER + ",0.13,0,default\n3304,0.13,0.15\n", 3, "columns"),
    (HEADER + ",0.13,0,default\n33.04,0.13,0.15,make-up\n", 3, "hs_prefix"),
    (HEADER + ",0.13,0,default\n3304,0.13,0.15,a\n3304,0.13,0.10,b\n", 4, "twice"),
    (HEADER + ",0.13,0,default\n3304,0.13,NaN,make-up\n", 3, "consumption_rate"),
])
def test_malformed_file_names_file_and_line(tmp_path, body, line, words):
    path = write(tmp_path, body)
    with pytest.raises(RateFileError) as caught:
        load_rates(path)
    assert f"{path}:{line}:" in str(caught.value)
    assert words in str(caught.value)


def test_a_table_without_default_row_is_refused(tmp_path):
    path = write(tmp_path, HEADER + "3304,0.13,0.15,make-up\n")
    with pytest.raises(RateFileError, match="no default row"):
        load_rates(path)
    with pytest.raises(RateFileError, match="no default row"):
        RateTable({"3304": (D("0.13"), D("0.15"))})


def test_empty_and_missing_files_are_refused(tmp_path):
    with pytest.raises(RateFileError, match="empty"):
        load_rates(write(tmp_path, "\n# nothing\n"))
    with pytest.raises(RateFileError, match="cannot read"):
        load_rates(tmp_path / "absent.csv")

