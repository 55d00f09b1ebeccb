"""Receipts as CEB XML (services/common/ceb/receipt_xml.py), validated against the official XSD.

The XSD is read from ``CEB_XSD_DIR`` when set (relative paths from the repository root), else
from the shared folder next to the repository, as tests/unit/test_ceb_xsd.py does.
"""
from __future__ import annotations

import os
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from services.common.ceb import xsd
from services.common.ceb.receipt_xml import ReceiptMessage, ReceiptXmlError, receipt_message, receipt_messages

REPO = Path(__file__).resolve().parents[2]
NS = "{http://www.chinaport.gov.cn/ceb}"


def xsd_dir() -> Path:
    configured = os.environ.get("CEB_XSD_DIR")
    path = Path(configured) if configured else REPO.parent / "shared" / "ceb" / "xsd"
    return path if path.is_absolute() else REPO / path


def assert_valid(xml: bytes) -> etree._Element:
    root = etree.fromstring(xml)
    assert xsd.problems(xsd.schema_for(xsd_dir()), root) == []
    return root


def guid(n: int) -> str:
    return str(uuid.UUID(int=n)).upper()


def order_receipt(n: int, receiver: str) -> dict:
    return {"guid": guid(n), "message": "CEB312", "receiver": receiver, "ebpCode": receiver, "ebcCode": receiver,
            "orderNo": f"O{n}", "returnStatus": "120", "returnTime": "20240301103000123",
            "returnInfo": "verified", "failures": []}


def tax_bill(n: int, **extra) -> dict:
    return {"guid": guid(n), "message": "CEB816", "receiver": "3301963K27", "invtNo": "29912024I000000001",
            "taxNo": "29912024I000000001-01", "returnStatus": "1", "returnTime": "20240301103000123",
            "returnInfo": "tax bill issued", "customsTax": Decimal("0"), "valueAddedTax": Decimal("107.06"),
            "consumptionTax": Decimal("123.53"), "taxStatus": "1", "assureCode": "3301963K27",
            "customsCode": "2991", "failures": [],
            "taxLines": [{"gnum": 1, "gcode": "3304990000", "taxPrice": Decimal("1000"), "customsTax": Decimal("0"),
                          "valueAddedTax": Decimal("107.06"), "consumptionTax": Decimal("123.53")}], **extra}


def test_250_receipts_for_two_receivers_make_messages_of_at_most_100_in_order():
    receipts = [order_receipt(n, "BBBB000002" if n % 5 == 4 else "AAAA000001") for n in range(250)]
    messages = receipt_messages(receipts)
    a = [r["guid"] for r in receipts if r["receiver"] == "AAAA000001"]
    b = [r["guid"] for r in receipts if r["receiver"] == "BBBB000002"]
    assert [(m.code, m.receiver, len(m.guids)) for m in messages] == [
        ("CEB312", "AAAA000001", 100), ("CEB312", "AAAA000001", 100), ("CEB312", "BBBB000002", 50)]
    assert messages[0].guids + messages[1].guids == tuple(a) and messages[2].guids == tuple(b)
    for message in messages:
        root = assert_valid(message.xml)
        assert root.tag == f"{NS}CEB312Message"
        assert [e.findtext(f"{NS}guid") for e in root] == list(message.guids)
        assert len(root.get("guid")) == 36 and root.get("guid") == root.get("guid").upper()
        assert root.get("version")


def test_messages_are_split_by_code_too_and_written_again_identically():
    receipts = [order_receipt(1, "AAAA000001"), tax_bill(2, receiver="AAAA000001"), order_receipt(3, "AAAA000001")]
    messages = receipt_messages(receipts, max_per_message=1)
    assert [(m.code, m.guids) for m in messages] == [("CEB312", (guid(1),)), ("CEB312", (guid(3),)),
                                                     ("CEB816", (guid(2),))]
    assert receipt_messages(receipts, max_per_message=1) == messages  # same receipts, same message guids
    assert all(isinstance(m, ReceiptMessage) for m in messages)


def test_a_tax_bill_is_a_valid_ceb816():
    root = assert_valid(receipt_message("CEB816", [tax_bill(1), tax_bill(2)]))
    heads = root.findall(f"{NS}Tax/{NS}TaxHeadRd")
    assert [h.findtext(f"{NS}status") for h in heads] == ["1", "1"]
    assert root.findtext(f"{NS}Tax/{NS}TaxListRd/{NS}consumptionTax") == "123.53"


def test_a_tax_bill_status_change_is_a_valid_ceb818():
    change = {"guid": guid(7), "message": "CEB818", "receiver": "3301963K27", "invtNo": "29912024I000000001",
              "taxNo": "29912024I000000001-01", "returnStatus": "2", "returnTime": "20240415103000123",
              "returnInfo": "aggregated for payment", "taxStatus": "2", "entDutyNo": "DUTY-2024-0001",
              "assureCode": "3301963K27", "failures": [], "taxLines": []}
    root = assert_valid(receipt_message("CEB818", [change]))
    assert root.findtext(f"{NS}Tax/{NS}TaxHeadStatus/{NS}entDutyNo") == "DUTY-2024-0001"


def test_a_receipt_missing_a_mandatory_field_is_named_with_its_guid_and_field():
    bad = {**order_receipt(9, "AAAA000001"), "message": "CEB622", "copNo": "C1"}
    with pytest.raises(ReceiptXmlError) as caught:
        receipt_messages([order_receipt(1, "AAAA000001"), bad])
    assert caught.value.guid == guid(9) and caught.value.field == "preNo"
    assert guid(9) in str(caught.value) and "preNo" in str(caught.value)


def test_a_tax_bill_without_lines_is_refused_by_name():
    with pytest.raises(ReceiptXmlError) as caught:
        receipt_message("CEB816", [tax_bill(3, taxLines=[])])
    assert caught.value.field == "taxLines" and guid(3) in str(caught.value)


def test_a_field_the_xsd_refuses_is_reported_with_the_receipt_guid():
    with pytest.raises(ReceiptXmlError) as caught:
        receipt_message("CEB816", [tax_bill(4, taxStatus="12")])
    assert guid(4) in str(caught.value) and "status" in str(caught.value)


def test_more_than_100_in_one_message_is_refused():
    with pytest.raises(ReceiptXmlError, match="1 to 100"):
        receipt_message("CEB312", [order_receipt(n, "AAAA000001") for n in range(101)])
