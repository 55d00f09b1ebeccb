from decimal import Decimal

import pytest

from services.paydata import protocol
from services.paydata.protocol import UploadError, parse_upload
from tests.unit.paydata.samples import text, upload_body


def test_an_upload_is_read_with_its_amount_exact_and_its_signed_members_in_order():
    body = upload_body()
    body["payExchangeInfoHead"]["totalAmount"] = Decimal("338.21")
    upload = parse_upload(text(body).replace('"338.21"', "338.21"))  # a JSON number, as platforms send it
    assert upload.total_amount == Decimal("338.21") and isinstance(upload.total_amount, Decimal)
    assert list(upload.payload) == ["sessionID", "payExchangeInfoHead", "payExchangeInfoLists", "serviceTime"]
    assert upload.session_id == "S1" and upload.cert_no == "01" and upload.service_time == 1709265600000


@pytest.mark.parametrize(("mutate", "code", "field"), [
    (lambda b: b["payExchangeInfoHead"].update(initalRequest="x" * 8001), protocol.BAD_FIELD,
     "payExchangeInfoHead.initalRequest"),
    (lambda b: b["payExchangeInfoHead"].update(initalResponse="y" * 8001), protocol.BAD_FIELD,
     "payExchangeInfoHead.initalResponse"),
    (lambda b: b["payExchangeInfoHead"].pop("payTransactionId"), protocol.BAD_FIELD,
     "payExchangeInfoHead.payTransactionId"),
    (lambda b: b["payExchangeInfoHead"].update(totalAmount="-1"), protocol.BAD_FIELD, "payExchangeInfoHead.totalAmount"),
    (lambda b: b["payExchangeInfoHead"].update(totalAmount="1e400x"), protocol.BAD_FIELD,
     "payExchangeInfoHead.totalAmount"),
    (lambda b: b["payExchangeInfoHead"].update(verDept="9"), protocol.BAD_FIELD, "payExchangeInfoHead.verDept"),
    (lambda b: b.update(payExchangeInfoLists=[]), protocol.BAD_FIELD, "payExchangeInfoLists"),
    (lambda b: b["payExchangeInfoLists"][0].update(goodsInfo=[{"itemLink": "x"}]), protocol.BAD_FIELD,
     "payExchangeInfoLists[0].goodsInfo[0].gname"),
    (lambda b: b.pop("sessionID"), protocol.BAD_FIELD, "sessionID"),
    (lambda b: b.pop("signValue"), protocol.BAD_FIELD, "signValue"),
    (lambda b: b.update(serviceTime="yesterday"), protocol.BAD_FIELD, "serviceTime"),
])
def test_a_bad_field_is_refused_naming_it(mutate, code, field):
    body = upload_body()
    mutate(body)
    with pytest.raises(UploadError) as caught:
        parse_upload(text(body))
    assert (caught.value.code, caught.value.field) == (code, field)


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", "[" * 100_000])
def test_what_is_no_json_object_is_unreadable_not_a_traceback(raw):
    with pytest.raises(UploadError) as caught:
        parse_upload(raw)
    assert caught.value.code == protocol.UNREADABLE


def test_the_limits_at_exactly_8000_characters_pass():
    body = upload_body()
    body["payExchangeInfoHead"].update(initalRequest="x" * 8000, initalResponse="y" * 8000)
    assert len(parse_upload(text(body)).head["initalRequest"]) == 8000


def test_open_request_and_acknowledgement():
    assert protocol.open_request("O1", "S1", 5) == '{"orderNo":"O1","sessionID":"S1","serviceTime":5}'
    assert protocol.accepted_ack('{"code":"10000","message":"","serviceTime":1}')
    assert protocol.accepted_ack('{"code":10000}')
    assert not protocol.accepted_ack('{"code":"20000"}') and not protocol.accepted_ack("<html>")
