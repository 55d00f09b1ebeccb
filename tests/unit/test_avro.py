"""The Avro wire format (services/common/avro.py): header, exact amounts, document shape."""
from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from services.common.avro import SCHEMA_OF_KIND, WireError, codec
from services.tools.generator import generate

SETS = generate(20, fault_share="0.5", seed=3)


@pytest.mark.parametrize("kind", ["order", "payment", "logistics", "inventory"])
def test_documents_round_trip_unchanged(kind):
    wire = codec()
    for s in SETS:
        doc = getattr(s, kind)
        name, back = wire.decode(wire.encode(SCHEMA_OF_KIND[kind], doc))
        assert name == SCHEMA_OF_KIND[kind]
        assert back == doc  # absent optional fields stay absent, amounts equal as decimals, "message" restored


def test_records_carry_their_schema_name_and_version_in_a_header():
    data = codec().encode("sandan.ceb.Payment", SETS[0].payment)
    assert data[0] == 0xA5
    assert data[2:2 + data[1]] == b"sandan.ceb.Payment/2"


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xa5\x05abc", b"\xa5\x0cunknown.Name/1", b"{\"json\": true}"])
def test_foreign_bytes_are_refused_clearly(data):
    with pytest.raises(WireError):
        codec().decode(data)


def test_a_truncated_body_is_refused():
    data = codec().encode("sandan.ceb.Order", SETS[0].order)
    with pytest.raises(WireError):
        codec().decode(data[: len(data) // 2])


def test_a_sixth_fraction_digit_cannot_be_encoded():
    doc = copy.deepcopy(SETS[0].payment)
    doc["amountPaid"] = Decimal("1.000001")
    with pytest.raises(WireError, match="fraction digits"):
        codec().encode("sandan.ceb.Payment", doc)


def test_an_amount_beyond_the_wire_range_is_refused_not_wrapped():
    doc = dict(SETS[0].payment, amountPaid=Decimal("92233720368547.75808"))
    with pytest.raises(WireError, match="range"):
        codec().encode("sandan.ceb.Payment", doc)


def test_the_one_long_beyond_the_range_is_refused_when_read_too():
    # -2**63 units is a valid Avro long but no amount sandan could write back: read as one, a
    # worker echoing it would fail on its output (found by the worker fuzz target)
    import io

    import fastavro
    wire = codec()
    entry = wire._by_name["sandan.ceb.Payment"]
    raw = entry.to_wire(dict(SETS[0].payment, amountPaid=Decimal(0)))
    raw["amountPaid"] = -2**63
    buf = io.BytesIO()
    buf.write(wire.encode("sandan.ceb.Payment", SETS[0].payment)[:len(entry.out)])
    fastavro.schemaless_writer(buf, entry.parsed, raw)
    with pytest.raises(WireError, match="range"):
        wire.decode(buf.getvalue())
    raw["amountPaid"] = -2**63 + 1  # the lowest amount there is reads and writes back
    buf = io.BytesIO(buf.getvalue()[:len(entry.out)])
    buf.seek(0, 2)
    fastavro.schemaless_writer(buf, entry.parsed, raw)
    _, doc = wire.decode(buf.getvalue())
    assert doc["amountPaid"] == Decimal("-92233720368547.75807")
    assert wire.decode(wire.encode("sandan.ceb.Payment", doc))[1]["amountPaid"] == doc["amountPaid"]


def test_a_record_missing_a_required_field_is_refused():
    doc = copy.deepcopy(SETS[0].payment)
    del doc["payCode"]
    with pytest.raises(WireError):
        codec().encode("sandan.ceb.Payment", doc)


@settings(max_examples=200)
@given(st.decimals(min_value=Decimal("-92233720368547.75807"), max_value=Decimal("92233720368547.75807"), places=5))
def test_any_standard_amount_survives_the_wire_exactly(amount):
    doc = dict(SETS[0].payment, amountPaid=amount)
    assert codec().decode(codec().encode("sandan.ceb.Payment", doc))[1]["amountPaid"] == amount


def test_nested_documents_in_sandan_records_keep_the_document_shape():
    inventory = SETS[1].inventory
    record = {"declarationId": "E:O", "ebpCode": "E", "orderNo": "O", "status": "verified", "failures": [],
              "missing": [], "customsTax": Decimal(0), "consumptionTax": Decimal("1.5"), "valueAddedTax": Decimal(0),
              "taxTotal": Decimal("1.5"), "taxableValue": Decimal("10"), "assureCode": "A", "buyerKey": None,
              "quotaYear": 2025, "inventory": inventory, "lastDocumentAt": 1, "decidedAt": 2}
    _, back = codec().decode(codec().encode("sandan.Verdict", record))
    assert back["inventory"] == inventory
    assert back["taxTotal"] == Decimal("1.5")
