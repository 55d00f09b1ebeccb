"""Reading CEB messages: every message type, namespaces, counts, field checks, lenient mode."""
from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from services.common.ceb import CebError, parse_file, parse_message
from services.common.ceb.schema import entity
from services.common.documents import MESSAGE_TYPES, NAMESPACE

DATA = Path(__file__).resolve().parents[1] / "data" / "ceb"
SAMPLES = {path.name.split("_")[0]: path for path in sorted(DATA.glob("CEB*.xml"))}
ORDER_ID = b"110101199001011234"  # buyer of the first sample order


def sample(code: str) -> bytes:
    return SAMPLES[code].read_bytes()


def parse(data: bytes, **options):
    options.setdefault("xsd_dir", "")  # field checks only; the XSD has its own tests
    return parse_message(data, source="orders.xml", **options)


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


def refused(data: bytes, **options) -> CebError:
    with pytest.raises(CebError) as caught:
        parse(data, **options)
    return caught.value


def test_there_is_one_sample_per_message_type():
    assert sorted(SAMPLES) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("code", sorted(MESSAGE_TYPES))
def test_every_message_type_parses_with_typed_fields(code):
    mt = MESSAGE_TYPES[code]
    message = parse_file(SAMPLES[code], xsd_dir="")
    assert message.code == code
    assert len(message.guid) == 36 and message.version == "1.0"
    assert message.documents and not message.rejected
    assert (message.transfer is not None) == mt.transfer
    for document in message.documents:
        assert document["message"] == code
        _assert_typed(document, mt.head)
        if mt.body:
            assert document["lines"]
            for line in document["lines"]:
                _assert_typed(line, mt.body)
        else:
            assert "lines" not in document


def _assert_typed(values: dict, entity_name: str) -> None:
    expected = {"string": str, "decimal": Decimal, "int": int}
    specs = entity(entity_name).by_name
    for name, value in values.items():
        if name in ("message", "lines"):
            continue
        assert type(value) is expected[specs[name].kind], (entity_name, name, value)


def test_order_sample_reads_the_worked_example():
    message = parse(sample("CEB311"))
    first, second = message.documents
    assert first["orderNo"] == "O202403010001"
    assert first["acturalPaid"] == Decimal("338.21") and str(first["acturalPaid"]) == "338.21"
    assert first["goodsValue"] + first["freight"] + first["taxTotal"] - first["discount"] == first["acturalPaid"]
    assert [line["gnum"] for line in first["lines"]] == [1, 2]
    assert sum(line["totalPrice"] for line in first["lines"]) == first["goodsValue"]
    assert len(second["lines"]) == 1
    assert "note" not in second  # absent optional field → absent key
    assert message.transfer == {"copCode": "3301963K27", "copName": "杭州海淘优选跨境电商平台有限公司",
                                "dxpMode": "DXP", "dxpId": "DXPENT3301963K27"}


def test_waybill_keeps_the_given_precision_and_int_fields():
    waybill = parse(sample("CEB511")).documents[0]
    assert str(waybill["freight"]) == "10.00000"
    assert waybill["packNo"] == 1 and type(waybill["packNo"]) is int


def test_receipts_are_one_document_per_return_element():
    receipts = parse(sample("CEB622")).documents
    assert [r["returnStatus"] for r in receipts] == ["800", "-621005"]
    assert "invtNo" not in receipts[1]


def test_tax_bill_has_head_fields_and_lines_and_status_has_no_lines():
    bill = parse(sample("CEB816")).documents[0]
    assert bill["valueAddedTax"] == Decimal("28.21")
    assert sum(line["valueAddedTax"] for line in bill["lines"]) == Decimal("28.21")
    status = parse(sample("CEB818")).documents[0]
    assert status["status"] == "2" and "lines" not in status


def test_utf8_bom_is_accepted():
    assert len(parse(b"\xef\xbb\xbf" + sample("CEB311")).documents) == 2


def test_any_prefix_is_accepted():
    data = sample("CEB311").replace(b"ceb:", b"c2:").replace(b"xmlns:ceb=", b"xmlns:c2=")
    assert parse(data).documents == parse(sample("CEB311")).documents


def test_default_namespace_is_accepted():
    data = sample("CEB311").replace(b"ceb:", b"").replace(b"xmlns:ceb=", b"xmlns=")
    assert parse(data).documents == parse(sample("CEB311")).documents


def test_wrong_namespace_is_refused():
    data = sample("CEB311").replace(NAMESPACE.encode(), b"http://example.com/ceb")
    error = refused(data)
    assert "namespace 'http://example.com/ceb'" in str(error) and "CEB311" in str(error)


def test_missing_namespace_is_refused():
    data = sample("CEB311").replace(b"ceb:", b"").replace(b' xmlns:ceb="' + NAMESPACE.encode() + b'"', b"")
    assert "no namespace" in str(refused(data))


def test_unknown_root_is_refused():
    assert "is not a CEB message" in str(refused(b'<ceb:CEB999Message xmlns:ceb="' + NAMESPACE.encode() + b'"/>'))


def _with_items(code: str, count: int) -> bytes:
    root = etree.fromstring(sample(code))
    items = [child for child in root if etree.QName(child).localname in ("Payment", "Delivery")]
    template = items[0]
    for extra in items[1:]:
        root.remove(extra)
    for n in range(1, count):
        clone = copy.deepcopy(template)
        clone.find(f".//{{{NAMESPACE}}}guid").text = f"{n:08X}-0000-4000-8000-000000000000"
        template.addnext(clone)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_hundred_documents_are_accepted():
    assert len(parse(_with_items("CEB411", 100)).documents) == 100


def test_a_hundred_and_one_documents_are_refused_even_when_lenient():
    error = refused(_with_items("CEB411", 101), lenient=True)
    assert "101" in str(error) and "at most 100" in str(error)


def test_delivery_message_holds_exactly_one_delivery():
    assert len(parse(_with_items("CEB711", 1)).documents) == 1
    assert "at most 1 allowed" in str(refused(_with_items("CEB711", 2)))


PAID = b"<ceb:acturalPaid>338.21</ceb:acturalPaid>"


@pytest.mark.parametrize("text, problem", [
    ("3.3821E2", "'3.3821E2' is not a decimal number"),
    ("338.2x", "'338.2x' is not a decimal number"),
    ("NaN", "'NaN' is not a decimal number"),
    ("1,338.21", "'1,338.21' is not a decimal number"),
    ("", "'' is not a decimal number"),
    ("338.210001", "'338.210001' has 6 fraction digits, at most 5 allowed"),
    ("12345678901234567890", "has 20 digits, at most 19 allowed"),
])
def test_bad_amounts_are_refused_with_field_and_document(text, problem):
    error = refused(replace_once(sample("CEB311"), PAID, f"<ceb:acturalPaid>{text}</ceb:acturalPaid>".encode()))
    message = str(error)
    assert message.startswith("orders.xml: CEB311 document guid=03110001-0000-4000-8000-000000000000 "
                              "orderNo=O202403010001: field OrderHead/acturalPaid: ")
    assert problem in message
    assert error.index == 0 and error.guid == "03110001-0000-4000-8000-000000000000"


def test_huge_junk_in_an_amount_is_quoted_only_in_part():
    junk = "9x" * 5000
    message = str(refused(replace_once(sample("CEB311"), PAID, f"<ceb:acturalPaid>{junk}</ceb:acturalPaid>".encode())))
    assert "is not a decimal number" in message and len(message) < 400


def test_surrounding_white_space_is_trimmed():
    data = replace_once(sample("CEB311"), PAID, b"<ceb:acturalPaid>\n   338.21\t</ceb:acturalPaid>")
    assert parse(data).documents[0]["acturalPaid"] == Decimal("338.21")
    data = replace_once(sample("CEB311"), b"<ceb:orderNo>O202403010001<", b"<ceb:orderNo>  O202403010001 \n<")
    assert parse(data).documents[0]["orderNo"] == "O202403010001"


@pytest.mark.parametrize("text, problem", [
    ("1.5", "'1.5' is not a whole number"),
    ("one", "'one' is not a whole number"),
    ("1234567890", "has 10 digits, at most 9 allowed"),
    # DOMAIN §2a: no sign, plain digits (xs:int would take "+1"; Python's int() takes other digits)
    ("-1", "'-1' has a sign: counts are plain digits and never negative"),
    ("+1", "'+1' has a sign"),
    ("-0", "'-0' has a sign"),
    ("\u0661", "is not a whole number"),   # ARABIC-INDIC DIGIT ONE
    ("\uff11", "is not a whole number"),   # FULLWIDTH DIGIT ONE
])
def test_bad_int_fields_are_refused(text, problem):
    data = replace_once(sample("CEB511"), b"<ceb:packNo>1</ceb:packNo>", f"<ceb:packNo>{text}</ceb:packNo>".encode())
    message = str(refused(data))
    assert "field LogisticsHead/packNo" in message and problem in message


def test_gnum_outside_xs_int_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:gnum>2</ceb:gnum>", b"<ceb:gnum>2147483648</ceb:gnum>")
    assert "field OrderList[2]/gnum: '2147483648' is outside the range of xs:int" in str(refused(data))


def test_missing_required_field_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:ebcName>", b"<ceb:removed>").replace(b"</ceb:ebcName>", b"</ceb:removed>", 1)
    message = str(refused(data))
    assert "field OrderHead/ebcName: required but missing" in message
    assert "OrderHead: unknown element ceb:removed" in message


def test_missing_line_field_names_the_line():
    data = replace_once(sample("CEB311"), b"<ceb:country>601</ceb:country>", b"")
    assert "field OrderList[2]/country: required but missing" in str(refused(data))


def test_unknown_element_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:note>", b"<ceb:vipLevel>3</ceb:vipLevel><ceb:note>")
    assert "OrderHead: unknown element ceb:vipLevel" in str(refused(data))


def test_element_from_another_namespace_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:note>", b'<x:note xmlns:x="urn:other">x</x:note><ceb:note>')
    assert "unknown element note (namespace 'urn:other')" in str(refused(data))


def test_repeated_field_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:currency>142</ceb:currency>", b"<ceb:currency>142</ceb:currency>" * 2)
    assert "field OrderHead/currency: appears more than once" in str(refused(data))


def test_unexpected_block_in_the_message_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:BaseTransfer>", b"<ceb:Payment/><ceb:BaseTransfer>")
    assert "unexpected element ceb:Payment in CEB311Message" in str(refused(data, lenient=True))


def test_missing_base_transfer_is_refused():
    start = sample("CEB311").index(b"<ceb:BaseTransfer>")
    end = sample("CEB311").index(b"</ceb:BaseTransfer>") + len(b"</ceb:BaseTransfer>")
    data = sample("CEB311")[:start] + sample("CEB311")[end:]
    assert "exactly one ceb:BaseTransfer, found 0" in str(refused(data))


def test_signed_message_without_signature_is_refused():
    data = sample("CEB621")
    data = data[:data.index(b"<ds:Signature")] + b"</ceb:CEB621Message>\n"
    assert "needs a ds:Signature" in str(refused(data))


def test_signature_subscribe_and_extension_are_ignored():
    extra = (b"<ceb:BaseSubscribe><ceb:status>ALL</ceb:status><ceb:dxpMode>DXP</ceb:dxpMode>"
             b"<ceb:dxpAddress>DXPENT0000000001</ceb:dxpAddress></ceb:BaseSubscribe>"
             b"<ceb:ExtendMessage><ceb:name>x</ceb:name><ceb:version>1</ceb:version>"
             b"<ceb:Message><anything><at>all</at></anything></ceb:Message></ceb:ExtendMessage>")
    data = replace_once(sample("CEB311"), b"</ceb:BaseTransfer>", b"</ceb:BaseTransfer>" + extra)
    assert parse(data).documents == parse(sample("CEB311")).documents


def test_too_long_string_is_refused_by_character_count():
    name = "杭" * 100  # 100 characters, 300 bytes: allowed
    data = replace_once(sample("CEB311"), "杭州海淘优选跨境电商平台有限公司".encode(), name.encode())
    assert parse(data).documents[0]["ebpName"] == name
    data = replace_once(sample("CEB311"), "杭州海淘优选跨境电商平台有限公司".encode(), (name + "州").encode())
    assert "field OrderHead/ebpName: is 101 characters long, at most 100 allowed" in str(refused(data))


def test_fixed_length_field_is_checked():
    data = replace_once(sample("CEB311"), b"<ceb:currency>142</ceb:currency>", b"<ceb:currency>14</ceb:currency>")
    assert "field OrderHead/currency: is 2 characters long, exactly 3 required" in str(refused(data))


def test_document_guid_must_have_36_characters():
    data = replace_once(sample("CEB311"), b"03110001-0000-4000-8000-000000000000", b"03110001-0000-4000-8000-00000000000")
    assert "field OrderHead/guid: is 35 characters long, exactly 36 required" in str(refused(data))


def test_message_guid_and_version_are_checked():
    data = sample("CEB311")
    root_guid = parse(data).guid.encode()
    assert "attribute guid is 37 characters long" in str(refused(data.replace(root_guid, root_guid + b"0")))
    assert "attribute version is missing" in str(refused(data.replace(b'" version="1.0">', b'">', 1)))


def test_empty_optional_element_counts_as_absent():
    data = sample("CEB311")
    start = data.index(b"<ceb:note>DOMAIN")
    end = data.index(b"</ceb:note>", start) + len(b"</ceb:note>")
    assert "note" not in parse(data[:start] + b"<ceb:note/>" + data[end:]).documents[0]
    data = replace_once(data, b"<ceb:consigneeDistrict>110101</ceb:consigneeDistrict>",
                        b"<ceb:consigneeDistrict> </ceb:consigneeDistrict>")
    assert "consigneeDistrict" not in parse(data).documents[0]


def test_empty_required_element_is_refused():
    data = replace_once(sample("CEB311"), b"<ceb:orderNo>O202403010001</ceb:orderNo>", b"<ceb:orderNo> </ceb:orderNo>")
    assert "field OrderHead/orderNo: is empty, at least 1 character required" in str(refused(data))


def test_order_needs_at_least_one_line():
    data = sample("CEB311")
    second = data.index(b"<ceb:Order>", data.index(b"<ceb:Order>") + 1)
    start = data.index(b"<ceb:OrderList>", second)
    end = data.index(b"</ceb:OrderList>", second) + len(b"</ceb:OrderList>")
    message = str(refused(data[:start] + data[end:]))
    assert "orderNo=O202403010002: Order: at least one OrderList required" in message


def test_lenient_mode_keeps_good_documents_and_reports_bad_ones():
    data = replace_once(sample("CEB311"), PAID, b"<ceb:acturalPaid>338.2x</ceb:acturalPaid>")
    data = replace_once(data, b"<ceb:gnum>2</ceb:gnum>", b"<ceb:gnum>two</ceb:gnum>")
    message = parse(data, lenient=True)
    assert [d["orderNo"] for d in message.documents] == ["O202403010002"]
    [bad] = message.rejected
    assert bad.index == 0 and bad.orderNo == "O202403010001"
    assert bad.guid == "03110001-0000-4000-8000-000000000000"
    assert bad.errors == ["field OrderHead/acturalPaid: '338.2x' is not a decimal number",
                          "field OrderList[2]/gnum: 'two' is not a whole number"]
    assert bad.raw["acturalPaid"] == "338.2x" and bad.raw["lines"][1]["gnum"] == "two"
    assert bad.raw["message"] == "CEB311"


def test_strict_mode_raises_on_the_first_bad_document_with_all_its_errors():
    data = replace_once(sample("CEB311"), b"<ceb:currency>142</ceb:currency>", b"<ceb:currency>1</ceb:currency>")
    data = data.replace(b"<ceb:freight>0</ceb:freight>", b"<ceb:freight>0.0.0</ceb:freight>", 1)
    error = refused(data)
    assert error.index == 0 and len(error.errors) == 1 and "currency" in str(error)


def test_messages_of_the_wrong_kind_are_not_accepted_in_lenient_mode_either():
    assert "not well-formed" in str(refused(b"<ceb:CEB311Message", lenient=True))


def test_error_messages_never_contain_personal_data():
    base = sample("CEB311")
    too_long = ORDER_ID + b"0" * 43  # 61 characters
    cases = [
        replace_once(base, ORDER_ID, too_long),
        replace_once(base, b"<ceb:buyerName>" + "张三".encode(), b"<ceb:buyerName>" + "张三".encode() * 40),
        replace_once(base, b"<ceb:consigneeTelephone>", b"<ceb:consigneeTelephone><b>" + ORDER_ID + b"</b>"),
        replace_once(base, b"<ceb:buyerIdType>1</ceb:buyerIdType>", b"<ceb:buyerIdType>" + ORDER_ID + b"</ceb:buyerIdType>"),
    ]
    for data in cases:
        error = refused(data)
        assert ORDER_ID.decode() not in str(error) and "张三" not in str(error)
        for rejected in parse(data, lenient=True).rejected:
            assert all(ORDER_ID.decode() not in e and "张三" not in e for e in rejected.errors)
