"""What the platform's responder reads and writes (pure): customs' openReq, its own upload.

The upload keeps customs' ``sessionID`` exactly as received, carries the payment data as the
platform recorded it (``payExchangeInfoHead``, ``payExchangeInfoLists``) and is signed over the
179 ``||`` text with the platform's key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from services.common.signing.crypto import PrivateKey
from services.common.signing.paydata import compact_json, sign_paydata

MAX_OPEN_REQ = 4096


@dataclass(frozen=True)
class OpenRequest:
    order_no: str
    session_id: str
    service_time: int | None


def parse_open_request(text: str | None) -> OpenRequest | None:
    """customs' ``openReq``, or None when it is not one (the responder still answers 10000)."""
    if not text or len(text) > MAX_OPEN_REQ:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    order_no, session_id = body.get("orderNo"), body.get("sessionID")
    if not isinstance(order_no, str) or not order_no.strip() or not isinstance(session_id, str) or not session_id:
        return None
    service_time = body.get("serviceTime")
    return OpenRequest(order_no.strip(), session_id, service_time if isinstance(service_time, int) else None)


def read_record(line: str) -> dict | None:
    """One line of the platform's payment-data file (README: Payment-data checks), or None if it is no record."""
    try:
        record = json.loads(line, parse_float=Decimal)
    except ValueError:
        return None
    if (not isinstance(record, dict) or not isinstance(record.get("orderNo"), str)
            or not isinstance(record.get("payExchangeInfoHead"), dict)
            or not isinstance(record.get("payExchangeInfoLists"), list)):
        return None
    return record


def upload_text(record: dict, session_id: str, now_ms: int, key: PrivateKey, cert_no: str) -> str:
    """``payExInfoStr`` for customs: the record's payment data under customs' sessionID, signed."""
    payload = {"sessionID": session_id, "payExchangeInfoHead": record["payExchangeInfoHead"],
               "payExchangeInfoLists": record["payExchangeInfoLists"], "serviceTime": now_ms}
    payload["certNo"] = cert_no
    payload["signValue"] = sign_paydata(key, payload)
    return compact_json(payload)
