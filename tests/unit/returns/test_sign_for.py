"""CEB513 waybill sign-for statuses, answered with CEB514 receipts by the returns service."""
from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

from services.common.ceb.receipt_xml import receipt_messages

from . import samples as s
from .harness import Harness, codes_of, receipts

ROOT = Path(__file__).resolve().parents[3]


def sign_for(waybill: str = s.WAYBILL, carrier: str = s.CARRIER, guid: str = "SIGN-0000-0000-0000-000000000001") -> dict:
    return {"message": "CEB513", "guid": guid.ljust(36, "0")[:36], "appType": "1", "appTime": "20250306100000",
            "appStatus": "2", "logisticsCode": carrier, "logisticsName": "Carrier", "logisticsNo": waybill,
            "logisticsStatus": "S", "logisticsTime": "20250306095900", "note": None, "submitter": carrier}


def test_the_sign_for_of_a_cleared_declarations_waybill_is_concluded_to_its_carrier():
    h = Harness()
    h.feed("declarations.cleared", s.verdict(), s.RELEASE)
    [answer] = receipts(h.feed("documents.logistics_status", sign_for(), s.RELEASE + 1), "CEB514")
    assert (answer["returnStatus"], answer["receiver"], answer["logisticsNo"], answer["logisticsStatus"]) == \
        ("399", s.CARRIER, s.WAYBILL, "S")


def test_the_sign_for_of_an_unknown_waybill_is_refused_and_leaves_no_state():
    h = Harness()
    [answer] = receipts(h.feed("documents.logistics_status", sign_for("SD-UNKNOWN"), s.RELEASE), "CEB514")
    assert answer["returnStatus"] == "100" and codes_of(answer) == {"WAYBILL_UNKNOWN"}
    assert h.entry("SD-UNKNOWN") == {"logisticsNo": "SD-UNKNOWN", "links": [], "held": []}


def test_another_carriers_sign_for_of_the_same_number_is_refused():
    h = Harness()
    h.feed("declarations.cleared", s.verdict(), s.RELEASE)
    [answer] = receipts(h.feed("documents.logistics_status", sign_for(carrier="91310000MA1OTHER01"), s.RELEASE),
                        "CEB514")
    assert answer["returnStatus"] == "100" and answer["receiver"] == "91310000MA1OTHER01"


def test_both_answers_are_ceb514_messages_the_official_xsd_accepts():
    h = Harness()
    h.feed("declarations.cleared", s.verdict(), s.RELEASE)
    answers = receipts(h.feed("documents.logistics_status", sign_for(), s.RELEASE), "CEB514")
    answers += receipts(h.feed("documents.logistics_status", sign_for("SD-UNKNOWN", guid="SIGN-2"), s.RELEASE),
                        "CEB514")
    xsd_dir = Path(os.environ.get("CEB_XSD_DIR") or ROOT.parent / "shared" / "ceb" / "xsd")
    if not xsd_dir.is_absolute():
        xsd_dir = ROOT / xsd_dir
    schema = etree.XMLSchema(etree.parse(str(xsd_dir / "import-business-node-202205.xsd")))
    [message] = receipt_messages(answers)
    assert message.code == "CEB514" and len(message.guids) == 2
    assert schema.validate(etree.fromstring(message.xml)), schema.error_log
