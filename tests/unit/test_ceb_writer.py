"""Writing CEB messages: layout, defaults, refusals, and the round trip through the reader."""
from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from services.common.avro import MAX_UNITS
from services.common.ceb import CebError, parse_message, write_message, xsd
from services.common.ceb.schema import FieldSpec, entity
from services.common.documents import MESSAGE_TYPES, NAMESPACE

REPO = Path(__file__).resolve().parents[2]
XSD_DIR = REPO.parent / "shared" / "ceb" / "xsd"
DATA = REPO / "tests" / "data" / "ceb"
SAMPLES = {path.name.split("_")[0]: path for path in sorted(DATA.glob("CEB*.xml"))}


def documents_of(code: str) -> list[dict]:
    return parse_message(SAMPLES[code].read_bytes(), xsd_dir="").documents


def canonical(value):
    """Decimals compared by their digits, not only their value: 1.10 must stay 1.10."""
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


@pytest.mark.parametrize("code", sorted(MESSAGE_TYPES))
def test_every_sample_round_trips_and_validates(code):
    documents = documents_of(code)
    data = write_message(code, documents)
    assert canonical(parse_message(data, xsd_dir=XSD_DIR).documents) == canonical(documents)


def test_layout_of_a_written_message():
    data = write_message("CEB311", documents_of("CEB311"), guid="4cde1cfd-eded-46b1-946c-b8022e42fc94")
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ceb:CEB311Message xmlns:ceb="'
                           + NAMESPACE.encode() + b'" guid="4CDE1CFD-EDED-46B1-946C-B8022E42FC94" version="1.0">')
    root = etree.fromstring(data)
    assert [etree.QName(c).localname for c in root] == ["Order", "Order", "BaseTransfer"]
    head = root[0][0]
    assert [etree.QName(c).localname for c in head] == [
        f.name for f in entity("OrderHead").fields if f.name in documents_of("CEB311")[0]]
    assert b"<ceb:acturalPaid>338.21</ceb:acturalPaid>" in data


def test_default_guid_is_a_new_upper_case_uuid():
    first = parse_message(write_message("CEB312", documents_of("CEB312")), xsd_dir="").guid
    second = parse_message(write_message("CEB312", documents_of("CEB312")), xsd_dir="").guid
    assert re.fullmatch(r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}", first)
    assert first != second


def test_base_transfer_defaults_to_the_sender_and_can_be_overridden():
    payments = documents_of("CEB411")
    assert parse_message(write_message("CEB411", payments), xsd_dir="").transfer == {
        "copCode": "31222699S7", "copName": "示例支付科技有限公司", "dxpMode": "DXP", "dxpId": "DXPENT31222699S7"}
    transfer = {"copCode": "3301961234", "copName": "代理", "dxpId": "DXPENT0000000009", "note": "经代理传输"}
    written = parse_message(write_message("CEB411", payments, transfer=transfer), xsd_dir="").transfer
    assert written == {**transfer, "dxpMode": "DXP"}


def test_receipts_carry_no_transfer_and_no_signature():
    data = write_message("CEB622", documents_of("CEB622"))
    assert b"BaseTransfer" not in data and b"Signature" not in data
    with pytest.raises(CebError, match="carries no BaseTransfer"):
        write_message("CEB622", documents_of("CEB622"), transfer={"copCode": "X"})


@pytest.mark.parametrize("code", sorted(MESSAGE_TYPES))
def test_placeholder_signature_exactly_where_the_standard_requires_one(code):
    documents = documents_of(code)
    root = etree.fromstring(write_message(code, documents))
    signatures = root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature")
    assert len(signatures) == (1 if MESSAGE_TYPES[code].signed else 0)


def test_decimals_are_written_without_exponent():
    payment = dict(documents_of("CEB411")[0], amountPaid=Decimal("3.3821E+2"))
    assert b"<ceb:amountPaid>338.21</ceb:amountPaid>" in write_message("CEB411", [payment])
    payment["amountPaid"] = Decimal("1E+3")
    assert b"<ceb:amountPaid>1000</ceb:amountPaid>" in write_message("CEB411", [payment])


def _refusal(code: str, documents: list, **options) -> str:
    with pytest.raises(CebError) as caught:
        write_message(code, documents, **options)
    return str(caught.value)


def test_float_amounts_are_refused():
    payment = dict(documents_of("CEB411")[0], amountPaid=338.21)
    assert "field PaymentHead/amountPaid: a float cannot be a decimal field" in _refusal("CEB411", [payment])


def test_too_precise_amounts_are_refused():
    payment = dict(documents_of("CEB411")[0], amountPaid=Decimal("338.210001"))
    assert "'338.210001' has 6 fraction digits, at most 5 allowed" in _refusal("CEB411", [payment])


def test_unknown_and_missing_fields_are_refused():
    payment = dict(documents_of("CEB411")[0], actualPaid=Decimal(1))
    del payment["payCode"]
    message = _refusal("CEB411", [payment])
    assert "PaymentHead: unknown field(s) actualPaid" in message
    assert "field PaymentHead/payCode: required but missing" in message
    assert message.startswith("write_message: CEB411 document guid=04110001-")


def test_wrong_types_are_refused():
    line = dict(documents_of("CEB311")[0]["lines"][0], gnum="1", itemName=5)
    order = dict(documents_of("CEB311")[0], lines=[line])
    message = _refusal("CEB311", [order])
    assert "field OrderList[1]/itemName: a int cannot be a string field" in message
    assert "gnum" not in message  # an int field given as digits is accepted


def test_documents_of_another_message_are_refused():
    assert "document is a CEB411, not a CEB311" in _refusal("CEB311", documents_of("CEB411"))


def test_counts_are_checked():
    assert "at least one document" in _refusal("CEB311", [])
    assert "101 documents, at most 100" in _refusal("CEB412", documents_of("CEB412")[:1] * 101)
    assert "at most 1 per CEB711Message" in _refusal("CEB711", documents_of("CEB711") * 2)
    assert "\"lines\" must be a non-empty list" in _refusal("CEB311", [dict(documents_of("CEB311")[0], lines=[])])
    assert "unknown message type 'CEB999'" in _refusal("CEB999", [])


def test_characters_xml_cannot_carry_are_refused_without_echoing_them():
    order = dict(documents_of("CEB311")[0], buyerName="张\x01三")
    message = _refusal("CEB311", [order])
    assert "field OrderHead/buyerName: contains characters XML 1.0 cannot carry" in message
    assert "张" not in message


# ---- the round trip as a property -------------------------------------------------------------

_TEXT_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                            exclude_characters="\ufffe\uffff ") | st.sampled_from("&<>\"' 　\t\n\r")


def _text(spec: FieldSpec):
    if spec.length is not None:
        low = high = spec.length
    else:
        low = spec.min_length or (0 if spec.required else 1)
        high = min(spec.max_length or 40, 40)
    # Leading/trailing blanks are trimmed by the reader; anything else must survive intact.
    return st.text(_TEXT_CHARS, min_size=low, max_size=high).filter(lambda s: s == s.strip(" \t\r\n"))


def _stamp(t) -> str:
    """YYYYMMDDhhmmssSSS of a datetime (strftime's %Y does not pad years before 1000)."""
    return f"{t.year:04d}{t:%m%d%H%M%S}{t.microsecond // 1000:03d}"


def _value(spec: FieldSpec):
    if spec.name == "currency":
        # The XSD fixes currency to 142 (CNY); the field checks leave that to the FIXED_VALUES rule.
        return st.just("142")
    if spec.allowed is not None:
        return st.sampled_from(sorted(spec.allowed))
    if spec.time_format is not None:
        return st.datetimes().map(lambda t: _stamp(t)[:len(spec.time_format)])
    if spec.upper_case:
        return _text(spec).map(str.upper).filter(lambda s: len(s) == spec.length and s == s.strip(" \t\r\n"))
    if spec.kind == "decimal":
        # Within the standard's digits and what sandan's wire format carries (MAX_UNITS of 0.00001);
        # amounts are never negative (DOMAIN §2a).
        return st.integers(0, spec.fraction_digits or 5).flatmap(
            lambda k: st.integers(0, MAX_UNITS // 10**(5 - k)).map(lambda n: Decimal(n).scaleb(-k)))
    if spec.kind == "int":
        limit = min(10 ** (spec.total_digits or 10) - 1, 2**31 - 1)
        return st.integers(0, limit)  # counts (gnum, packNo): no sign (DOMAIN §2a)
    return _text(spec)


def _record(entity_name: str):
    fields = entity(entity_name).fields
    return st.fixed_dictionaries({f.name: _value(f) for f in fields if f.required},
                                 optional={f.name: _value(f) for f in fields if not f.required})


@st.composite
def messages(draw):
    code = draw(st.sampled_from(sorted(MESSAGE_TYPES)))
    mt = MESSAGE_TYPES[code]
    count = draw(st.integers(1, min(mt.max_items or 3, 3)))
    documents = []
    for _ in range(count):
        document = dict(draw(_record(mt.head)), message=code)
        if mt.body:
            document["lines"] = draw(st.lists(_record(mt.body), min_size=1, max_size=3))
        documents.append(document)
    return code, documents


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_written_messages_read_back_unchanged(message):
    code, documents = message
    parsed = parse_message(write_message(code, documents), xsd_dir="")
    assert parsed.code == code
    assert canonical(parsed.documents) == canonical(documents)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_written_messages_validate_against_the_xsd(message):
    code, documents = message
    root = etree.fromstring(write_message(code, documents))
    assert xsd.problems(xsd.schema_for(XSD_DIR), root) == []
