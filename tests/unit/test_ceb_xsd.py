"""Strict validation against the official XSD, and the field table's agreement with it.

The XSDs live in the shared folder next to the repository (``<repo>/../shared/ceb/xsd``);
sandan itself never reads them unless ``CEB_XSD_DIR`` points there.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from services.common.ceb import CebError, parse_message, xsd
from services.common.ceb.schema import FIELDS_FILE
from services.common.documents import MESSAGE_TYPES

REPO = Path(__file__).resolve().parents[2]
XSD_DIR = REPO.parent / "shared" / "ceb" / "xsd"
DATA = REPO / "tests" / "data" / "ceb"
XS = "{http://www.w3.org/2001/XMLSchema}"
ORDER = (DATA / "CEB311_order.xml").read_bytes()
BUYER_ID = "110101199001011234"

# The first order's appType and appTime swapped: every field is fine, only the order is wrong.
SWAPPED = ORDER.replace(
    b"<ceb:appType>1</ceb:appType>\n      <ceb:appTime>20240301103000</ceb:appTime>",
    b"<ceb:appTime>20240301103000</ceb:appTime>\n      <ceb:appType>1</ceb:appType>", 1)


def test_the_shared_xsd_is_where_the_tests_expect_it():
    assert (XSD_DIR / xsd.SCHEMA_FILE).is_file() and (XSD_DIR / "xmldsig-core-schema.xsd").is_file()


@pytest.mark.parametrize("path", sorted(DATA.glob("CEB*.xml")), ids=lambda p: p.name)
def test_every_sample_is_valid_against_the_xsd(path):
    schema = xsd.schema_for(XSD_DIR)
    assert xsd.problems(schema, etree.fromstring(path.read_bytes())) == []


def test_field_order_matches_the_xsd_sequences():
    table = json.loads(FIELDS_FILE.read_text(encoding="utf-8"))
    schema = etree.parse(str(XSD_DIR / xsd.SCHEMA_FILE))
    checked = 0
    for element in schema.getroot().findall(f"{XS}element"):
        name = element.get("name")
        if name not in table or name == "ExtendMessage":  # ExtendMessage's free-form Message is not a field
            continue
        sequence = element.find(f"{XS}complexType/{XS}sequence")
        assert [e.get("name") for e in sequence.findall(f"{XS}element")] == [f["name"] for f in table[name]], name
        checked += 1
    assert checked == len(table) - 1


def test_xsd_validation_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("CEB_XSD_DIR", raising=False)
    assert [d["appType"] for d in parse_message(SWAPPED).documents] == ["1", "1"]


def test_xsd_validation_by_argument_refuses_what_only_the_xsd_forbids():
    with pytest.raises(CebError) as caught:
        parse_message(SWAPPED, xsd_dir=XSD_DIR, source="o.xml")
    assert str(caught.value).startswith("o.xml: CEB311 document guid=03110001-0000-4000-8000-000000000000 "
                                        "orderNo=O202403010001: XSD: Element 'ceb:appTime': This element is "
                                        "not expected.")


def test_xsd_validation_by_setting(monkeypatch):
    monkeypatch.setenv("CEB_XSD_DIR", str(XSD_DIR))
    with pytest.raises(CebError, match="XSD: Element 'ceb:appTime'"):
        parse_message(SWAPPED)
    assert parse_message(SWAPPED, xsd_dir="").documents  # "" turns it off explicitly


def test_xsd_problem_rejects_only_its_document_in_lenient_mode():
    message = parse_message(SWAPPED, xsd_dir=XSD_DIR, lenient=True)
    assert [d["orderNo"] for d in message.documents] == ["O202403010002"]
    assert [r.index for r in message.rejected] == [0]


def test_xsd_problem_outside_documents_always_raises():
    data = ORDER.replace(b"<ceb:copCode>3301963K27</ceb:copCode>\n    <ceb:copName>",
                         b"<ceb:copName>", 1).replace(b"</ceb:copName>", b"</ceb:copName><ceb:copCode>3301963K27</ceb:copCode>", 1)
    assert parse_message(data, xsd_dir="").transfer["copCode"] == "3301963K27"
    with pytest.raises(CebError, match="does not match the CEB XSD: Element 'ceb:copName'"):
        parse_message(data, xsd_dir=XSD_DIR, lenient=True)


def test_broken_document_does_not_make_the_rest_fail_the_xsd():
    # The XSD's complaints about one document are pinned on that document alone.
    data = ORDER.replace(b"<ceb:ebcName>", b"<ceb:removed>", 1).replace(b"</ceb:ebcName>", b"</ceb:removed>", 1)
    message = parse_message(data, xsd_dir=XSD_DIR, lenient=True)
    assert len(message.documents) == 1 and message.rejected[0].index == 0


def test_xsd_messages_about_personal_fields_are_redacted():
    # Padding passes sandan's trimmed length check but not the XSD's, which counts it.
    padded = ORDER.replace(BUYER_ID.encode(), b" " * 50 + BUYER_ID.encode(), 1)
    assert parse_message(padded, xsd_dir="").documents[0]["buyerIdNumber"] == BUYER_ID
    with pytest.raises(CebError) as caught:
        parse_message(padded, xsd_dir=XSD_DIR)
    assert "buyerIdNumber" in str(caught.value) and "maxLength" in str(caught.value)
    assert BUYER_ID not in str(caught.value)
    rejected = parse_message(padded, xsd_dir=XSD_DIR, lenient=True).rejected
    assert rejected and all(BUYER_ID not in e for e in rejected[0].errors)


def test_redact_keeps_messages_about_other_fields():
    message = "Element '{http://www.chinaport.gov.cn/ceb}orderNo': [facet 'maxLength'] The value 'O1' is long."
    assert xsd.redact(message) == "Element 'ceb:orderNo': [facet 'maxLength'] The value 'O1' is long."
    private = "Element '{http://www.chinaport.gov.cn/ceb}buyerName': [facet 'maxLength'] The value '张三' is long."
    assert xsd.redact(private) == "element buyerName: violates facet 'maxLength' (value not shown: personal data)"


def test_missing_xsd_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CebError, match="CEB XSD not found"):
        parse_message(ORDER, xsd_dir=tmp_path)


def test_compiled_schema_is_cached():
    assert xsd.schema_for(XSD_DIR) is xsd.schema_for(str(XSD_DIR))


def test_catalogue_and_xsd_agree_on_message_roots():
    schema = etree.parse(str(XSD_DIR / xsd.SCHEMA_FILE))
    roots = {e.get("name") for e in schema.getroot().findall(f"{XS}element") if e.get("name").startswith("CEB")}
    assert roots == {mt.root for mt in MESSAGE_TYPES.values()}
