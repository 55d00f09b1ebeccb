"""The 179 interface's JSON as customs reads and answers it (pure).

``openReq`` (customs → platform ``platDataOpen``) and ``payExInfoStr`` (platform → customs
``realTimeDataUpload``); answers ``{"code", "message", "serviceTime"}`` with 10000 accepted,
20000 failure and 20001-20007 naming what is wrong (README, Payment-data checks).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

ACCEPTED = "10000"
FAILED = "20000"            # customs could not take it now: send again
UNREADABLE = "20001"        # no payExInfoStr, not a JSON object, too large
BAD_FIELD = "20002"         # a field missing, of the wrong type or too long
UNKNOWN_SESSION = "20003"   # a sessionID customs never issued (or long expired)
SESSION_USED = "20004"      # a sessionID already answered
OTHER_PLATFORM = "20005"    # the session was issued to another platform
CERTIFICATE = "20006"       # certNo not a registered, valid, unrevoked certificate of the platform
SIGNATURE = "20007"         # signValue does not verify

INITIAL_MAX = 8000          # initalRequest / initalResponse, characters (the interface's limit)
MAX_ORDERS = 100            # payExchangeInfoLists entries
MAX_GOODS = 200             # goodsInfo entries of one order
# Longest text of each head / list field, characters; the interface's own limits where it gives them.
HEAD_FIELDS = {"guid": 36, "initalRequest": INITIAL_MAX, "initalResponse": INITIAL_MAX, "ebpCode": 18,
               "payCode": 18, "payTransactionId": 60, "currency": 3, "verDept": 1, "payType": 1,
               "tradingTime": 14, "note": 1000}
HEAD_REQUIRED = ("guid", "initalRequest", "initalResponse", "ebpCode", "payCode", "payTransactionId",
                 "totalAmount", "currency", "verDept", "payType", "tradingTime")
LIST_FIELDS = {"orderNo": 60, "recpAccount": 100, "recpCode": 20, "recpName": 200}
GOODS_FIELDS = {"gname": 250, "itemLink": 1000}
VER_DEPTS = ("1", "2", "3")  # 1 UnionPay, 2 NetsUnion, 3 other


class UploadError(ValueError):
    """An upload customs refuses: the answer's code, the field at fault, what is wrong."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code, self.field, self.message = code, field, message


@dataclass(frozen=True)
class Upload:
    session_id: str
    head: dict
    lists: list
    service_time: int
    cert_no: str
    sign_value: str
    payload: dict       # the four signed members, as received (what the signature covers)
    total_amount: Decimal


def answer(code: str, message: str, now_ms: int) -> dict:
    return {"code": code, "message": message, "serviceTime": now_ms}


def open_request(order_no: str, session_id: str, now_ms: int) -> str:
    """The ``openReq`` form field customs posts to a platform's platDataOpen."""
    return json.dumps({"orderNo": order_no, "sessionID": session_id, "serviceTime": now_ms},
                      ensure_ascii=False, separators=(",", ":"))


def accepted_ack(text: str) -> bool:
    """Whether a platform's platDataOpen answer is the interface's acknowledgement (code 10000)."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("code")) == ACCEPTED


def parse_upload(text: str) -> Upload:
    """``payExInfoStr`` read and checked field by field; ``UploadError`` names the first fault.

    Numbers are read as Decimal (never float): ``totalAmount`` is money."""
    try:
        body = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise UploadError(UNREADABLE, "payExInfoStr", f"not JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise UploadError(UNREADABLE, "payExInfoStr", "not a JSON object")
    session_id = _text(body, "sessionID", 64, "")
    head = body.get("payExchangeInfoHead")
    if not isinstance(head, dict):
        raise UploadError(BAD_FIELD, "payExchangeInfoHead", "missing or not an object")
    for name in HEAD_REQUIRED:
        if name not in head or head[name] is None or head[name] == "":
            raise UploadError(BAD_FIELD, f"payExchangeInfoHead.{name}", "missing")
    for name, longest in HEAD_FIELDS.items():
        if name in head and head[name] is not None:
            _text(head, name, longest, "payExchangeInfoHead.", required=False)
    if str(head["verDept"]) not in VER_DEPTS:
        raise UploadError(BAD_FIELD, "payExchangeInfoHead.verDept", "must be 1 (UnionPay), 2 (NetsUnion) or 3 (other)")
    total = _amount(head["totalAmount"])
    lists = body.get("payExchangeInfoLists")
    if not isinstance(lists, list) or not lists:
        raise UploadError(BAD_FIELD, "payExchangeInfoLists", "missing, empty or not an array")
    if len(lists) > MAX_ORDERS:
        raise UploadError(BAD_FIELD, "payExchangeInfoLists", f"more than {MAX_ORDERS} orders")
    for i, entry in enumerate(lists):
        where = f"payExchangeInfoLists[{i}]."
        if not isinstance(entry, dict):
            raise UploadError(BAD_FIELD, where.rstrip("."), "not an object")
        if not entry.get("orderNo"):
            raise UploadError(BAD_FIELD, where + "orderNo", "missing")
        for name, longest in LIST_FIELDS.items():
            if name in entry and entry[name] is not None:
                _text(entry, name, longest, where, required=False)
        goods = entry.get("goodsInfo")
        if not isinstance(goods, list) or not goods:
            raise UploadError(BAD_FIELD, where + "goodsInfo", "missing, empty or not an array")
        if len(goods) > MAX_GOODS:
            raise UploadError(BAD_FIELD, where + "goodsInfo", f"more than {MAX_GOODS} goods")
        for j, item in enumerate(goods):
            if not isinstance(item, dict) or not item.get("gname"):
                raise UploadError(BAD_FIELD, f"{where}goodsInfo[{j}].gname", "missing")
            for name, longest in GOODS_FIELDS.items():
                if name in item and item[name] is not None:
                    _text(item, name, longest, f"{where}goodsInfo[{j}].", required=False)
    service_time = body.get("serviceTime")
    if isinstance(service_time, str) and service_time.isdigit():
        service_time = int(service_time)
    if not isinstance(service_time, int) or isinstance(service_time, bool):
        raise UploadError(BAD_FIELD, "serviceTime", "missing or not milliseconds since the epoch")
    cert_no = _text(body, "certNo", 64, "")
    sign_value = _text(body, "signValue", 4096, "")
    payload = {k: body[k] for k in ("sessionID", "payExchangeInfoHead", "payExchangeInfoLists", "serviceTime")}
    return Upload(session_id, head, lists, service_time, cert_no, sign_value, payload, total)


def _text(holder: dict, name: str, longest: int, where: str, required: bool = True) -> str:
    value = holder.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # codes such as verDept may come as numbers
    if not isinstance(value, str) or required and not value.strip():
        raise UploadError(BAD_FIELD, where + name, "missing or not a string")
    if len(value) > longest:
        raise UploadError(BAD_FIELD, where + name, f"longer than {longest} characters ({len(value)})")
    return value


def _amount(value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise UploadError(BAD_FIELD, "payExchangeInfoHead.totalAmount", "not a decimal number")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise UploadError(BAD_FIELD, "payExchangeInfoHead.totalAmount", "not a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise UploadError(BAD_FIELD, "payExchangeInfoHead.totalAmount", "not a non-negative decimal number")
    return amount
