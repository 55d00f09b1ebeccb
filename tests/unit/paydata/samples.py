"""A declaration's order and payment and the platform's matching raw payment data."""
from __future__ import annotations

import json
from decimal import Decimal

EBP, ORDER_NO = "3301963K27", "O202403010001"


def order(**changes) -> dict:
    doc = {"ebpCode": EBP, "orderNo": ORDER_NO, "payCode": "312228034T", "payTransactionId": "PAY2024030100001",
           "acturalPaid": Decimal("338.21"), "appType": "1",
           "lines": [{"gnum": 1, "itemName": "面霜 50ml"}, {"gnum": 2, "itemName": "Lipstick"}]}
    doc.update(changes)
    return doc


def payment(**changes) -> dict:
    doc = {"ebpCode": EBP, "orderNo": ORDER_NO, "payCode": "312228034T", "payTransactionId": "PAY2024030100001",
           "amountPaid": Decimal("338.21"), "appType": "1"}
    doc.update(changes)
    return doc


def raw_record(**head_changes) -> dict:
    """One line of a platform's payment-data file."""
    head = {"guid": "A8E2F6B4-1C3D-4E5F-8A9B-0C1D2E3F4A5B", "initalRequest": "amount=338.21&out_trade_no=X",
            "initalResponse": "<xml><return_code>SUCCESS</return_code></xml>", "ebpCode": EBP,
            "payCode": "312228034T", "payTransactionId": "PAY2024030100001", "totalAmount": Decimal("338.21"),
            "currency": "142", "verDept": "3", "payType": "1", "tradingTime": "20240301120000", "note": ""}
    head.update(head_changes)
    return {"orderNo": ORDER_NO, "payExchangeInfoHead": head,
            "payExchangeInfoLists": [{"orderNo": ORDER_NO, "goodsInfo": [{"gname": "面霜 50ml", "itemLink": "https://shop.example/1"},
                                                                          {"gname": "Lipstick", "itemLink": "https://shop.example/2"}],
                                      "recpAccount": "6222000000000000", "recpCode": "", "recpName": "Shop Ltd"}]}


def upload_body(session_id: str = "S1", **head_changes) -> dict:
    record = raw_record(**head_changes)
    return {"sessionID": session_id, "payExchangeInfoHead": record["payExchangeInfoHead"],
            "payExchangeInfoLists": record["payExchangeInfoLists"], "serviceTime": 1709265600000,
            "certNo": "01", "signValue": "c2ln"}


def text(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False, default=str)
