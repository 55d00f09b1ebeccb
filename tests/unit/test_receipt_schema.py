"""sandan.Receipt version 2 (tax bill fields, customs numbers) and records of version 1."""
from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro

from services.common.avro import SCHEMA_DIR, SUPERSEDED, codec

BASE = {"guid": "0312A000-0000-4000-8000-000000000001", "message": "CEB312", "receiver": "3301963K27",
        "returnStatus": "120", "returnTime": "20240301103000123", "returnInfo": "verified",
        "failures": [{"code": "TAX_TOTAL", "field": "OrderHead/taxTotal", "message": "off"}]}


def test_a_tax_bill_receipt_round_trips_exactly():
    bill = {**BASE, "message": "CEB816", "invtNo": "29912024I000000001", "taxNo": "29912024I000000001-1",
            "customsTax": Decimal("0"), "valueAddedTax": Decimal("28.21"), "consumptionTax": Decimal("30.645"),
            "taxStatus": "1", "entDutyNo": None, "assureCode": "3301963K27", "note": "issued",
            "taxLines": [{"gnum": 1, "gcode": "3304990000", "taxPrice": Decimal("310.00001"),
                          "customsTax": Decimal("0"), "valueAddedTax": Decimal("28.21"),
                          "consumptionTax": Decimal("30.645")}]}
    name, back = codec().decode(codec().encode("sandan.Receipt", bill))
    assert name == "sandan.Receipt"
    assert {k: back[k] for k in bill} == bill
    assert back["preNo"] is None and back["customsCode"] is None


def test_an_inventory_receipt_carries_its_customs_numbers():
    rec = {**BASE, "message": "CEB622", "copNo": "C1", "preNo": "B20240301000000001",
           "invtNo": "29912024I000000001", "customsCode": "2991"}
    back = codec().decode(codec().encode("sandan.Receipt", rec))[1]
    assert (back["preNo"], back["invtNo"], back["customsCode"], back["taxLines"]) == (
        "B20240301000000001", "29912024I000000001", "2991", [])


def test_the_header_names_version_2():
    data = codec().encode("sandan.Receipt", BASE)
    assert data[2:2 + data[1]] == b"sandan.Receipt/2"


def test_a_version_1_receipt_still_decodes_into_the_current_shape():
    old = json.loads((SCHEMA_DIR / SUPERSEDED / "receipt.v1.avsc").read_text(encoding="utf-8"))
    named: dict = {}
    fastavro.parse_schema(json.loads((SCHEMA_DIR / "failure.avsc").read_text(encoding="utf-8")), named_schemas=named)
    buf = io.BytesIO()
    tag = b"sandan.Receipt/1"
    buf.write(bytes([0xA5, len(tag)]) + tag)
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old, named_schemas=named), {**BASE, "invtNo": None})
    name, back = codec().decode(buf.getvalue())
    assert name == "sandan.Receipt"
    assert {k: back[k] for k in BASE} == BASE
    assert back["taxLines"] == [] and back["preNo"] is None and back["customsTax"] is None
