"""Receipts (CEB312/412/512/622 style) answering each document of a declaration.

Every document gets one answer addressed to the enterprise that sent it (its submitter;
a record from before submitters: its own sender field): accepted (120)
when its declaration verifies, rejected (100) with the failing rules when it does not or
when it expires incomplete, and a customs processing code (negative) when the document
itself is refused (a repeated appType 1, a change after verification).
"""
from __future__ import annotations

from services.common.clock import china_stamp
from services.common.documents import MESSAGE_TYPES, RECEIPT_FOR
from services.common.guids import random_guid
from services.common.senders import OWN_SENDER_FIELD, submitter_of
from services.common import codes
from services.common.verdict import Failure

ACCEPTED = "120"
REJECTED = "100"

SENDER_FIELD = OWN_SENDER_FIELD

# DOMAIN §1: customs' own processing codes for refusals of one document.
_REFUSAL_STATUS = {(codes.DUPLICATE, "CEB311"): "-301010", (codes.DUPLICATE, "CEB621"): "-621004",
                   (codes.LOCKED, "CEB311"): "-301011", (codes.LOCKED, "CEB511"): "-301011"}
_COPIED = ("orderNo", "ebpCode", "ebcCode", "payCode", "payTransactionId", "logisticsCode", "logisticsNo",
           "agentCode", "copNo", "invtNo", "logisticsStatus")


def receiver_of(doc: dict) -> str:
    return submitter_of(doc)


def receipt(doc: dict, status: str, info: str, failures: tuple[Failure, ...] | list[Failure], now_ms: int) -> dict:
    rec = {k: doc.get(k) for k in _COPIED}
    rec.update(guid=random_guid(), message=RECEIPT_FOR.get(doc["message"], "CEB312"),
               receiver=receiver_of(doc), documentGuid=doc.get("guid"), returnStatus=status,
               returnTime=china_stamp(now_ms), returnInfo=info[:1000],
               failures=[{"code": f.code, "field": f.field, "message": f.message} for f in failures])
    return rec


def refusal_receipt(doc: dict, code: str, message: str, now_ms: int) -> dict:
    status = _REFUSAL_STATUS.get((code, doc["message"]), REJECTED)
    field = f"{MESSAGE_TYPES[doc['message']].head}/{'appTime' if code == codes.APP_TIME else 'appType'}"
    return receipt(doc, status, f"{code}: {message}", [Failure(code, field, message)], now_ms)


def verdict_info(status: str, failures, missing) -> str:
    if status == "verified":
        return "verified: order, payment, waybill and inventory match"
    if missing:
        return f"INCOMPLETE: missing {', '.join(missing)}"
    return "rejected: " + ", ".join(sorted({f.code for f in failures}))
