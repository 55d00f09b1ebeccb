"""Amounts beyond what the wire format carries are refused by the reader, field by field
(found by the fault suite's gateway fuzz: such an amount passed the standard's 19 digits,
was answered accepted, and failed the Submit call with INTERNAL when published)."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.common.avro import codec
from services.common.ceb import CebError, parse_message

ORDER = (Path(__file__).resolve().parents[1] / "data" / "ceb" / "CEB311_order.xml").read_bytes()


def with_paid(text: str) -> bytes:
    return ORDER.replace(b"<ceb:acturalPaid>338.21</ceb:acturalPaid>", f"<ceb:acturalPaid>{text}</ceb:acturalPaid>"
                         .encode(), 1)


@pytest.mark.parametrize("text", ["92233720368547.75807", "92233720368547.758070000"])
def test_the_largest_amounts_the_wire_carries_are_read_and_encode(text):
    doc = parse_message(with_paid(text), xsd_dir="").documents[0]
    assert doc["acturalPaid"] == Decimal(text)
    codec().encode("sandan.ceb.Order", doc)


@pytest.mark.parametrize("text", ["92233720368547.75808", "99999999999999.99999", "0092233720368547.7580800"])
def test_larger_amounts_within_the_standards_digits_are_refused_with_their_field(text):
    with pytest.raises(CebError, match="acturalPaid: .* is out of range: at most 92233720368547.75807"):
        parse_message(with_paid(text), xsd_dir="")
    rejected = parse_message(with_paid(text), xsd_dir="", lenient=True).rejected
    assert rejected and "out of range" in rejected[0].errors[0]
