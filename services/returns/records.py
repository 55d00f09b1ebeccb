"""The records the returns service publishes: guarantee voids, receipts, waybill links, parcels.

Everything a redelivered input could make twice is made the same twice: void commands carry a
command id derived from the cancellation or return request (the guarantee service applies a
command id once), and receipts a guid derived from the document and the decision, so a
receiver can tell a repeated receipt from a new one.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from services.common.outputs import Output
from services.common.receipts import REJECTED, receipt
from services.common.verdict import Failure

ACCEPTED = "120"   # a return request is stored and waits for its goods
CONCLUDED = "399"  # a cancellation done, a return completed
ACTOR = "returns"
_RECEIPT_IDS = uuid.UUID("6f1d1e52-5a0b-4d58-9a51-3c1c2f6b7a90")


def cancel_command_id(cancel_guid: str) -> str:
    return f"void:{cancel_guid}"


def return_command_id(refund_guid: str) -> str:
    return f"void:return:{refund_guid}"


def void_command(decl: dict, command_id: str, amount: Decimal, reason: str, now_ms: int) -> Output:
    record = {"commandId": command_id, "action": "void", "assureCode": decl["assureCode"], "amount": amount,
              "declarationId": decl["declarationId"], "reason": reason, "actor": ACTOR, "at": now_ms}
    return Output("guarantee.commands", decl["assureCode"].encode(), "sandan.GuaranteeCommand", record)


def receipt_output(document: dict, outcome: str, status: str, info: str, failures, now_ms: int) -> Output | None:
    """A receipt answering ``document``; None when the document names nobody to answer."""
    record = receipt(document, status, info, tuple(failures), now_ms)
    if not record["receiver"]:
        return None
    record["guid"] = str(uuid.uuid5(_RECEIPT_IDS, f"{document.get('guid')}:{outcome}")).upper()
    return Output("receipts", record["receiver"].encode(), "sandan.Receipt", record)


def refusal_info(failures) -> str:
    return "refused: " + ", ".join(sorted({f.code for f in failures})) + ": " + "; ".join(f.message for f in failures)


def refusal_output(document: dict, failures: tuple[Failure, ...], now_ms: int) -> Output | None:
    return receipt_output(document, "refused", REJECTED, refusal_info(failures), failures, now_ms)


def parcel_document(parcel: dict, order_no: str | None) -> dict:
    """A returned parcel in the shape of a CEB711 document, so its receipt (CEB712 style)
    goes to the warehouse that reported it."""
    return {"message": "CEB711", "guid": parcel["arrivalId"], "operatorCode": parcel["warehouseCode"],
            "orderNo": order_no, "logisticsCode": parcel.get("logisticsCode"), "logisticsNo": parcel["logisticsNo"]}


def link_output(decl: dict, order_no: str, keep_until: int) -> Output:
    record = {"logisticsNo": decl["logisticsNo"], "logisticsCode": decl["logisticsCode"], "orderNo": order_no,
              "ebpCode": decl["ebpCode"], "releasedAt": decl["releasedAt"], "keepUntil": keep_until}
    return Output("returns.waybills", decl["logisticsNo"].encode(), "sandan.WaybillLink", record)


def routed_arrival(arrival: dict, order_no: str) -> Output:
    """An arrival re-keyed by the order it belongs to (for the partition owning that order)."""
    return Output("returns.arrivals", order_no.encode(), "sandan.WarehouseArrival", {**arrival, "orderNo": order_no})


def arrival_output(arrival: dict) -> Output:
    return Output("warehouse.arrivals", arrival["logisticsNo"].encode(), "sandan.WarehouseArrival", arrival)
