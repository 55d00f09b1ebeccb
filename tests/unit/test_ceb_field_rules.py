"""What a document must be before it enters the match (DOMAIN §2a), field by field, in every
input message: real China times, appType 1/2/3, appStatus 2, unsigned plain amounts,
upper-case guids. A bad document is set aside on its own (lenient) or raises (strict), naming
its field and, where §2a names one, the code; the Avro path of the gateway applies the same."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.avro import SCHEMA_OF_KIND, codec
from services.common.ceb import CebError, parse_message
from services.common.codes import APP_TIME, FIXED_VALUES, FORMAT_CHECK
from services.common.ceb.schema import FieldProblem, document_problems, entity
from services.common.clock import CHINA
from services.common.documents import MESSAGE_TYPES
from services.common.timefields import parse_china_date, parse_china_stamp, parse_china_time
from services.gateway.submission import AVRO, examine

DATA = Path(__file__).resolve().parents[1] / "data" / "ceb"
INPUTS = ("CEB311", "CEB411", "CEB511", "CEB513", "CEB621", "CEB623", "CEB625", "CEB711")
SAMPLES = {code: next(DATA.glob(f"{code}_*.xml")).read_bytes() for code in INPUTS}


def with_field(code: str, name: str, text: str) -> bytes:
    """The sample of ``code`` with the first ``name`` element's text replaced."""
    data = SAMPLES[code]
    pattern = re.compile(rb"<ceb:" + name.encode() + rb">[^<]*</ceb:" + name.encode() + rb">")
    assert pattern.search(data), (code, name)
    return pattern.sub(b"<ceb:" + name.encode() + b">" + text.encode() + b"</ceb:" + name.encode() + b">", data, 1)


def lenient(data: bytes):
    return parse_message(data, source="in.xml", lenient=True, xsd_dir="")


def refused_once(data: bytes, where: str):
    """The one document set aside, whose problems name ``where`` (``OrderHead/appTime``, or
    ``InventoryList/qty`` for any line's); the message's other documents must still be read."""
    message = lenient(data)
    assert len(message.rejected) == 1, message.rejected
    bad = message.rejected[0]
    field = re.escape(where).replace("/", r"(\[\d+\])?/")
    assert any(re.fullmatch(field, getattr(e, "field", "")) and re.match(f"field {field}: ", e)
               for e in bad.errors), bad.errors
    total = len(parse_message(SAMPLES[message.code], xsd_dir="").documents)
    assert len(message.documents) == total - 1
    with pytest.raises(CebError) as strict:
        parse_message(data, source="in.xml", xsd_dir="")
    assert re.search(f"field {field}: ", str(strict.value)) and strict.value.refusal_code == bad.code
    return bad


def head_of(code: str) -> str:
    return MESSAGE_TYPES[code].head


# ---- 1. time fields ---------------------------------------------------------------------------

TIME_FIELDS = [(code, f.name) for code in INPUTS for f in entity(head_of(code)).fields
               if f.time_format and f"<ceb:{f.name}>".encode() in SAMPLES[code]]
BAD_TIMES = ["ABCDEFGHIJKLMN", "20241301103000", "20240230103000", "20230229103000", "20240301243000",
             "20240301106000", "20240301103060", "+2024030110300", "2024 301103000", "２0240301103000",
             "00000301103000", "2024030110300", "202403011030000"]
BAD_DATES = ["20241301", "20230229", "2024031", "+2024031", "2024 301", "ABCDEFGH", "２0240301", "00000101"]


def test_every_time_field_of_the_input_messages_is_checked():
    names = {name for _, name in TIME_FIELDS}
    assert names == {"appTime", "payTime", "logisticsTime", "declTime", "ieDate"}
    assert {code for code, name in TIME_FIELDS if name == "appTime"} == set(INPUTS)


@pytest.mark.parametrize("code, name", TIME_FIELDS)
def test_a_time_that_is_no_real_instant_is_refused_with_its_field(code, name):
    form = entity(head_of(code)).by_name[name].time_format
    for text in BAD_DATES if form == "YYYYMMDD" else BAD_TIMES:
        bad = refused_once(with_field(code, name, text), f"{head_of(code)}/{name}")
        assert bad.code == (APP_TIME if name == "appTime" else FORMAT_CHECK), (text, bad.errors)
        if name == "appTime":
            assert f"field {head_of(code)}/appTime: APP_TIME: " in bad.errors[0]


def test_leap_days_and_the_last_second_are_real_instants():
    for text in ("20240229235959", "20000229000000", "20241231235959", "00010101000000"):
        assert lenient(with_field("CEB621", "appTime", text)).documents[0]["appTime"] == text
    for text in ("19000229000000", "21000229120000"):  # century years are leap years only by 400
        refused_once(with_field("CEB621", "appTime", text), "InventoryHead/appTime")


def test_parse_china_time_is_strict_and_gives_china_time():
    assert parse_china_time("20240229235959") == datetime(2024, 2, 29, 23, 59, 59, tzinfo=CHINA)
    assert parse_china_time("20240229235959").utcoffset().total_seconds() == 8 * 3600
    for text in BAD_TIMES + [" 20240301103000", "20240301103000 ", "", "２０２４０３０１１０３０００"]:
        assert parse_china_time(text) is None, text
    assert parse_china_date("20240229") == date(2024, 2, 29)
    assert all(parse_china_date(text) is None for text in BAD_DATES)
    assert parse_china_stamp("20240229235959123") == datetime(2024, 2, 29, 23, 59, 59, 123000, tzinfo=CHINA)
    assert parse_china_stamp("20240229245959123") is None and parse_china_stamp("2024022923595912") is None


def test_receipt_times_are_checked_too():
    data = (DATA / "CEB622_inventory_return.xml").read_bytes()
    data = re.sub(rb"<ceb:returnTime>[^<]*<", b"<ceb:returnTime>20241301103000000<", data, count=1)
    message = lenient(data)
    assert [r.index for r in message.rejected] == [0]
    assert "field InventoryReturn/returnTime: " in message.rejected[0].errors[0]


# ---- 2. appType and appStatus -----------------------------------------------------------------

@pytest.mark.parametrize("code", INPUTS)
def test_app_type_is_1_2_or_3(code):
    for text in ("1", "2", "3"):
        assert lenient(with_field(code, "appType", text)).documents[0]["appType"] == text
    for text in ("4", "0", "9", "A", ""):
        bad = refused_once(with_field(code, "appType", text), f"{head_of(code)}/appType")
        assert bad.code == FIXED_VALUES
        assert f"field {head_of(code)}/appType: FIXED_VALUES: {text!r} is not 1 (new), 2 (change) or 3" in bad.errors[0]


@pytest.mark.parametrize("code", INPUTS)
def test_app_status_must_be_declared(code):
    assert lenient(with_field(code, "appStatus", "2")).documents[0]["appStatus"] == "2"
    for text in ("1", "3", "02", "22"):
        bad = refused_once(with_field(code, "appStatus", text), f"{head_of(code)}/appStatus")
        assert bad.code == FIXED_VALUES
    assert "a stored document (1) has not been declared" in \
        refused_once(with_field(code, "appStatus", "1"), f"{head_of(code)}/appStatus").errors[0]


# ---- 3. amounts, prices, quantities ---------------------------------------------------------

def fields_of_kind(kind: str) -> list[tuple[str, str, str]]:
    """(message code, entity, field) of every ``kind`` field the input samples hold."""
    return [(code, spec_entity, f.name)
            for code in INPUTS
            for spec_entity in filter(None, (MESSAGE_TYPES[code].head, MESSAGE_TYPES[code].body))
            for f in entity(spec_entity).fields
            if f.kind == kind and f"<ceb:{f.name}>".encode() in SAMPLES[code]]


def assert_each_refused_with_its_field(code: str, spec_entity: str, name: str, bad_texts: dict[str, str]) -> None:
    """Each text in ``name`` refuses that one document, FORMAT_CHECK, its problem naming the field."""
    for text, problem in bad_texts.items():
        bad = refused_once(with_field(code, name, text), f"{spec_entity}/{name}")
        assert re.search(re.escape(spec_entity) + r"(\[\d+\])?/" + re.escape(f"{name}: {text!r} {problem}"),
                         "; ".join(bad.errors)), (text, bad.errors)
        assert bad.code == FORMAT_CHECK


DECIMAL_FIELDS = fields_of_kind("decimal")
BAD_AMOUNTS = {"-1": "has a sign", "-0": "has a sign", "+1": "has a sign", "-1000.5": "has a sign",
               "NaN": "is not a decimal number", "Infinity": "is not a decimal number",
               "1e3": "is not a decimal number", "1E3": "is not a decimal number",
               "1,000": "is not a decimal number", "1 000": "is not a decimal number",
               "１０": "is not a decimal number", "1.000001": "has 6 fraction digits, at most 5 allowed",
               ".": "is not a decimal number", "1.2.3": "is not a decimal number"}


def test_the_amount_fields_of_every_input_message_are_covered():
    names = {name for _, _, name in DECIMAL_FIELDS}
    assert {"goodsValue", "freight", "discount", "taxTotal", "acturalPaid", "price", "qty", "totalPrice",
            "amountPaid", "insuredFee", "grossWeight", "netWeight"} <= names


@pytest.mark.parametrize("code, spec_entity, name", DECIMAL_FIELDS)
def test_signed_and_non_plain_amounts_are_refused_with_their_field(code, spec_entity, name):
    assert_each_refused_with_its_field(code, spec_entity, name, BAD_AMOUNTS)


@pytest.mark.parametrize("code, spec_entity, name", DECIMAL_FIELDS)
def test_trailing_fraction_zeros_do_not_count(code, spec_entity, name):
    message = lenient(with_field(code, name, "12.500000"))
    assert not message.rejected
    values = [d.get(name) for d in message.documents] if spec_entity == head_of(code) else \
        [line.get(name) for d in message.documents for line in d["lines"]]
    read = [v for v in values if v == Decimal("12.5")]
    assert len(read) == 1 and read[0].as_tuple().exponent >= -5


def test_significant_digits_count_towards_the_nineteen():
    order = entity("OrderHead").by_name["freight"]
    assert order.convert("00000000000001234.1200000") == Decimal("1234.12")
    assert order.convert("0.00001000000000000000") == Decimal("0.00001")
    with pytest.raises(ValueError, match="has 20 digits"):
        order.convert("12345678901234567890")


INT_FIELDS = fields_of_kind("int")
BAD_COUNTS = {"-1": "has a sign", "+1": "has a sign", "-0": "has a sign", "\u0661": "is not a whole number",
              "\uff11": "is not a whole number", "1.0": "is not a whole number", "1e0": "is not a whole number"}


def test_the_count_fields_of_every_input_message_are_covered():
    assert {(spec_entity, name) for _, spec_entity, name in INT_FIELDS} >= {
        ("OrderList", "gnum"), ("LogisticsHead", "packNo"), ("InventoryHead", "packNo"), ("InventoryList", "gnum"),
        ("InvtRefundList", "gnum"), ("DeliveryList", "gnum")}


@pytest.mark.parametrize("code, spec_entity, name", INT_FIELDS)
def test_signed_and_non_ascii_counts_are_refused_with_their_field(code, spec_entity, name):
    """gnum and packNo: plain ASCII digits, no sign (xs:int would take "+1", int() Arabic-Indic digits)."""
    assert_each_refused_with_its_field(code, spec_entity, name, BAD_COUNTS)


# ---- 4. guid ------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", INPUTS)
def test_a_lower_case_guid_is_refused(code):
    upper = "ABCDEF01-9A9B-4C4D-8E8F-0A1B2C3D4E5F"
    assert lenient(with_field(code, "guid", upper)).documents[0]["guid"] == upper
    for lower in (upper.lower(), upper[:-1] + "f"):
        bad = refused_once(with_field(code, "guid", lower), f"{head_of(code)}/guid")
        assert f"field {head_of(code)}/guid: {lower!r} has lower-case letters" in bad.errors[0]


def test_a_lower_case_message_guid_refuses_the_message():
    data = re.sub(rb'guid="([^"]*)"', b'guid="abcdef01-9a9b-4c4d-8e8f-0a1b2c3d4e5f"', SAMPLES["CEB311"], count=1)
    with pytest.raises(CebError, match="attribute guid .* has lower-case letters"):
        lenient(data)


# ---- the Avro path of the gateway applies the same rules ------------------------------------

def _avro(code: str, **changes) -> bytes:
    document = parse_message(SAMPLES[code], xsd_dir="").documents[0]
    document.update(changes)
    return codec().encode(SCHEMA_OF_KIND[MESSAGE_TYPES[code].kind], document)


@pytest.mark.parametrize("changes, where", [
    ({"appTime": "ABCDEFGHIJKLMN"}, "OrderHead/appTime: APP_TIME"),
    ({"appTime": "20241301103000"}, "OrderHead/appTime: APP_TIME"),
    ({"appType": "4"}, "OrderHead/appType: FIXED_VALUES"),
    ({"appStatus": "1"}, "OrderHead/appStatus: FIXED_VALUES"),
    ({"freight": Decimal("-100")}, "OrderHead/freight: '-100.00000' has a sign"),
    ({"discount": Decimal("-0.01")}, "OrderHead/discount: '-0.01000' has a sign"),
    ({"guid": "03110001-0000-4000-8000-00000000000a"}, "OrderHead/guid: "),
    ({"lines": [{**parse_message(SAMPLES["CEB311"], xsd_dir="").documents[0]["lines"][0], "gnum": -1}]},
     "OrderList[1]/gnum: '-1' has a sign"),
    ({"lines": [{**parse_message(SAMPLES["CEB311"], xsd_dir="").documents[0]["lines"][0], "price": Decimal("-1000")}]},
     "OrderList[1]/price: '-1000.00000' has a sign"),
])
def test_avro_submissions_are_refused_by_the_same_rules(changes, where):
    submission = examine(AVRO, "CEB311", _avro("CEB311", **changes), frozenset({"3301963K27"}), "gateway:test")
    assert not submission.accepted and len(submission.refused) == 1
    assert f"field {where}" in submission.refused[0].info


def test_a_good_avro_submission_still_passes():
    submission = examine(AVRO, "CEB311", _avro("CEB311"), frozenset({"3301963K27"}), "gateway:test")
    assert submission.accepted and not submission.refused


# ---- 5. the lexical rules as properties ------------------------------------------------------

FREIGHT = entity("OrderHead").by_name["freight"]


@st.composite
def plain_decimals(draw):
    """(text, exact value) of a valid amount: up to 13 integer digits (any leading zeros), up to
    5 significant fraction digits, any trailing zeros, in each of xs:decimal's unsigned forms."""
    integer = draw(st.text("0123456789", max_size=13))
    significant = draw(st.text("0123456789", max_size=5).map(lambda f: f.rstrip("0")))
    fraction = significant + "0" * draw(st.integers(0, 8))
    value = Fraction(int(integer or "0")) + (Fraction(int(significant), 10 ** len(significant)) if significant else 0)
    if not fraction:
        form = draw(st.sampled_from(["I", "I."])) if integer else ".F0"
    else:
        form = "I.F" if integer else ".F"
    text = form.replace("I", integer).replace("F0", "0").replace("F", fraction)
    return text, value


@settings(max_examples=300, deadline=None)
@given(plain_decimals())
def test_plain_unsigned_decimals_are_read_exactly(case):
    text, value = case
    read = FREIGHT.convert(text)
    assert Fraction(read) == value and read.as_tuple().exponent >= -5
    document = lenient(with_field("CEB311", "freight", text)).documents[0]
    assert Fraction(document["freight"]) == value


def _mutations(text: str):
    inside = [text[:i] + c + text[i:] for i in range(1, len(text)) for c in (" ", ",")]
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    wide = [text[:i] + chr(ord(text[i]) - ord("0") + ord("０")) + text[i + 1:] for i in digits]
    return (["-" + text, "+" + text, text + "e3", text + "E-2", "NaN", "Infinity", "-Infinity", "sNaN"]
            + inside + wide)


@settings(max_examples=200, deadline=None)
@given(plain_decimals(), st.data())
def test_every_other_form_of_an_amount_is_refused_with_its_field(case, data):
    text, _ = case
    bad = data.draw(st.sampled_from(_mutations(text)))
    with pytest.raises(FieldProblem):
        FREIGHT.convert(bad)
    refused_once(with_field("CEB311", "freight", bad), "OrderHead/freight")


@settings(max_examples=100, deadline=None)
@given(plain_decimals(), st.text("123456789", min_size=1, max_size=3))
def test_a_sixth_significant_fraction_digit_is_refused(case, extra):
    text, _ = case
    integer, _, fraction = text.partition(".")
    bad = f"{integer or '0'}.{fraction.rstrip('0').ljust(5, '0')}{extra}"
    with pytest.raises(FieldProblem, match="fraction digits, at most 5 allowed"):
        FREIGHT.convert(bad)


def _oracle(text: str) -> datetime | None:
    """A real instant by the calendar of ``datetime`` itself, for 14 ASCII digits."""
    if len(text) != 14 or any(c not in "0123456789" for c in text):
        return None
    try:
        return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                        int(text[12:14]), tzinfo=CHINA)
    except ValueError:
        return None


_NUMERIC_TIMES = st.tuples(st.integers(0, 9999), *[st.integers(0, 99)] * 5).map(
    lambda p: f"{p[0]:04d}{p[1]:02d}{p[2]:02d}{p[3]:02d}{p[4]:02d}{p[5]:02d}")
_REAL_TIMES = st.datetimes().map(lambda t: f"{t.year:04d}{t:%m%d%H%M%S}")
_JUNK_TIMES = st.text("0123456789+- .:T１２ａ", min_size=13, max_size=15)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_REAL_TIMES, _NUMERIC_TIMES, _JUNK_TIMES))
def test_app_time_is_accepted_exactly_when_it_is_a_real_instant(text):
    expected = _oracle(text)
    assert parse_china_time(text) == expected
    data = with_field("CEB621", "appTime", text)
    if expected is not None:
        assert lenient(data).documents[0]["appTime"] == text
    elif text.strip() == text:  # the reader trims surrounding blanks, the parser does not
        bad = refused_once(data, "InventoryHead/appTime")
        assert bad.code == APP_TIME


# ---- typed records that reached Kafka without the reader ---------------------------------------

def test_document_problems_apply_the_same_rules_to_a_decoded_record():
    order = parse_message(SAMPLES["CEB311"], xsd_dir="").documents[0]
    assert document_problems(order, "OrderHead", "OrderList") == []
    assert document_problems(order, "OrderHead", "OrderList", decisions_only=True) == []
    bad = dict(order, appTime="ABCDEFGHIJKLMN", appType="4", freight=Decimal("-100"), ebpName="x" * 101,
               lines=[dict(order["lines"][0], price=Decimal("-1000"))])
    full = document_problems(bad, "OrderHead", "OrderList")
    assert [(p.field, p.code) for p in full] == [
        ("OrderHead/appType", FIXED_VALUES), ("OrderHead/appTime", APP_TIME), ("OrderHead/ebpName", FORMAT_CHECK),
        ("OrderHead/freight", FORMAT_CHECK), ("OrderList[1]/price", FORMAT_CHECK)]
    quick = document_problems(bad, "OrderHead", "OrderList", decisions_only=True)
    assert [p.field for p in quick] == ["OrderHead/appType", "OrderHead/appTime", "OrderHead/freight",
                                        "OrderList[1]/price"]
    assert [p.field for p in document_problems(dict(order, lines=[]), "OrderHead", "OrderList")] == [""]
