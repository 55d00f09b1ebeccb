"""`sandan guarantee`: arguments become a well-formed command; malformed ones never leave the machine."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.cli import build_parser, main
from services.cli.guarantee import cny, command_record


def parse(*argv):
    return build_parser().parse_args(["guarantee", *argv])


def test_settle_arguments_make_a_settle_command():
    record = command_record(parse("settle", "--assure-code", "X1", "--ent-duty-no", "N-7", "--bills", "E:1, E:2,",
                                  "--command-id", "c-1"))
    assert {k: record[k] for k in ("commandId", "action", "assureCode", "bills", "entDutyNo")} == {
        "commandId": "c-1", "action": "settle", "assureCode": "X1", "bills": ["E:1", "E:2"], "entDutyNo": "N-7"}


def test_register_arguments_keep_the_amount_exact():
    record = command_record(parse("register", "-a", "X1", "--kind", "cash_deposit", "--amount", "1000000.12345",
                                  "--valid-from", "20250101", "--valid-to", "20251231"))
    assert (record["amount"], record["validFrom"], record["validTo"]) == (Decimal("1000000.12345"), "20250101",
                                                                          "20251231")
    assert record["commandId"]  # a fresh idempotency key when none is given


def test_a_negative_amendment_is_refused_before_anything_is_sent(capsys):
    assert main(["guarantee", "amend", "-a", "X1", "--amount", "-5"]) == 1
    assert "INVALID_AMOUNT" in capsys.readouterr().err


def test_an_amount_with_six_fraction_digits_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        parse("amend", "-a", "X1", "--amount", "1.000001")
    assert exit_info.value.code == 2


@pytest.mark.parametrize("amount, text", [("12", "12.00"), ("28.2", "28.20"), ("0.00001", "0.00001"),
                                          ("1.23450", "1.2345")])
def test_amounts_show_two_decimals_unless_they_have_more(amount, text):
    assert cny(Decimal(amount)) == text
