from decimal import Decimal

from services.paydata.compare import compare, facts_of
from services.paydata.protocol import parse_upload
from tests.unit.paydata.samples import ORDER_NO, order, payment, text, upload_body


def _compare(facts, body):
    upload = parse_upload(text(body))
    return [m.field for m in compare(facts, upload.head, upload.lists, upload.total_amount)]


def test_the_platforms_data_agrees_with_the_declaration():
    assert _compare(facts_of(order(), payment()), upload_body()) == []


def test_amounts_compare_as_values_and_goods_in_any_order():
    body = upload_body(totalAmount="338.21000")
    body["payExchangeInfoLists"][0]["goodsInfo"].reverse()
    assert _compare(facts_of(order(), payment()), body) == []


def test_every_differing_field_is_named_without_its_values():
    body = upload_body(payTransactionId="OTHER", payCode="OTHERPAY", totalAmount="300")
    body["payExchangeInfoLists"][0]["goodsInfo"][0]["gname"] = "Something else"
    facts = facts_of(order(), payment())
    upload = parse_upload(text(body))
    found = compare(facts, upload.head, upload.lists, upload.total_amount)
    assert [m.field for m in found] == ["payTransactionId", "payCode", "totalAmount", "gname"]
    assert not any("OTHER" in m.message or "Something" in m.message for m in found)


def test_an_upload_for_another_order_is_a_mismatch_of_the_order_number():
    body = upload_body()
    body["payExchangeInfoLists"][0]["orderNo"] = "O-ELSEWHERE"
    assert _compare(facts_of(order(), payment()), body) == ["orderNo"]


def test_the_payment_decides_and_the_order_stands_in_when_no_payment_is_known():
    facts = facts_of(order(payTransactionId=None), payment(amountPaid=Decimal("338.21")))
    assert facts.pay_transaction_id == "PAY2024030100001" and facts.order_no == ORDER_NO
    only_order = facts_of(order(), None)
    assert only_order.amount == Decimal("338.21") and _compare(only_order, upload_body()) == []
    assert facts_of(None, None) is None
