"""Checking what the returns service reads, before any state changes.

Records come from other services and from enterprises; a record the service cannot use
raises ``InputError`` with a code, the field and a message (no personal data), and the
worker sends it to the dead-letter topic instead of stopping. A *business* refusal (a late
return, a cancellation after release) is not an input error: it is decided and answered
with a receipt.
"""
from __future__ import annotations

from decimal import Decimal

from services.common.codes import INVALID_FIELD, NOT_VERIFIED
from services.common.money import ZERO
from services.returns import policy

SORTINGS = ("fit", "unfit")

# The fields of a CEB623/625 that identify it in the receipt answering it.
# ``submitter``: the receipt goes to whoever sent the document in.
_RECEIPT_FIELDS = ("message", "guid", "orderNo", "ebpCode", "ebcCode", "agentCode", "copNo", "invtNo",
                   "logisticsCode", "logisticsNo", "submitter")


class InputError(ValueError):
    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{code} {field}: {message}")
        self.code, self.field, self.message = code, field, message


def _text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(INVALID_FIELD, f"{where}/{key}", f"{key} is missing or empty")
    return value.strip()


def _amount(record: dict, key: str, where: str, *, positive: bool = False) -> Decimal:
    value = record.get(key)
    if not isinstance(value, Decimal) or not value.is_finite() or value < ZERO or (positive and value == ZERO):
        need = "a positive" if positive else "a non-negative"
        raise InputError(INVALID_FIELD, f"{where}/{key}", f"{key} must be {need} amount")
    return value


def _gnum(line: dict, where: str) -> int:
    gnum = line.get("gnum")
    if not isinstance(gnum, int) or isinstance(gnum, bool) or gnum < 1:
        raise InputError(INVALID_FIELD, f"{where}/gnum", "gnum must be a positive whole number")
    return gnum


def _optional(record: dict, key: str) -> str | None:
    value = record.get(key)
    return value.strip() or None if isinstance(value, str) else None


def _app_time(doc: dict, where: str) -> None:
    try:
        policy.app_time_ms(_text(doc, "appTime", where))
    except ValueError:
        raise InputError(INVALID_FIELD, f"{where}/appTime", "appTime must be YYYYMMDDhhmmss") from None


def declaration_from_verdict(verdict: dict) -> dict:
    """The return-state summary of a cleared declaration (``sandan.ReturnsDeclaration``)."""
    if verdict.get("status") != "verified":
        raise InputError(NOT_VERIFIED, "status", f"status {verdict.get('status')!r}: only verified declarations clear")
    inventory = verdict.get("inventory")
    if not isinstance(inventory, dict):
        raise InputError(INVALID_FIELD, "inventory", "a cleared declaration must carry its inventory")
    lines, gnums = [], set()
    for i, line in enumerate(inventory.get("lines") or (), 1):
        where = f"inventory/InventoryList[{i}]"
        gnum = _gnum(line, where)
        if gnum in gnums:
            raise InputError(INVALID_FIELD, f"{where}/gnum", f"gnum {gnum} appears twice")
        gnums.add(gnum)
        lines.append({"gnum": gnum, "qty": _amount(line, "qty", where, positive=True),
                      "totalPrice": _amount(line, "totalPrice", where),
                      "gcode": (line.get("gcode") or "").strip()})
    if not lines:
        raise InputError(INVALID_FIELD, "inventory/InventoryList", "the inventory has no lines")
    assure = (verdict.get("assureCode") or inventory.get("assureCode") or "").strip()
    if not assure:
        raise InputError(INVALID_FIELD, "Verdict/assureCode", "no assureCode: no guarantee to give the tax back to")
    return {
        "declarationId": _text(verdict, "declarationId", "Verdict"), "ebpCode": _text(verdict, "ebpCode", "Verdict"),
        "invtNo": (inventory.get("invtNo") or "").strip() or None, "assureCode": assure,
        "submitter": _optional(inventory, "submitter"), "agentCode": _optional(inventory, "agentCode"),
        "buyerKey": verdict.get("buyerKey"), "quotaYear": verdict.get("quotaYear"),
        "logisticsCode": _text(inventory, "logisticsCode", "inventory"),
        "logisticsNo": _text(inventory, "logisticsNo", "inventory"),
        "taxTotal": _amount(verdict, "taxTotal", "Verdict"),
        "taxableValue": _amount(verdict, "taxableValue", "Verdict"),
        "lines": lines, "clearedAt": verdict["decidedAt"], "releasedAt": None, "cancelGuid": None,
        "cancelledAt": None, "seen": [], "requests": [], "parcels": [],
    }


def check_report(report: dict) -> None:
    for key in ("reportId", "ebpCode", "orderNo", "status"):
        _text(report, key, "CustomsReport")
    if not isinstance(report.get("decidedAt"), int) or report["decidedAt"] <= 0:
        raise InputError(INVALID_FIELD, "CustomsReport/decidedAt", "decidedAt must be ms since the epoch")


def check_cancel(doc: dict) -> None:
    for key in ("guid", "orderNo", "ebpCode"):
        _text(doc, key, "InvtCancel")
    _app_time(doc, "InvtCancel")


def check_refund(doc: dict) -> None:
    for key in ("guid", "orderNo", "ebpCode"):
        _text(doc, key, "InvtRefundHead")
    _app_time(doc, "InvtRefundHead")
    for i, line in enumerate(doc.get("lines") or (), 1):
        _gnum(line, f"InvtRefundList[{i}]")
        if not isinstance(line.get("qty"), Decimal) or not line["qty"].is_finite():
            raise InputError(INVALID_FIELD, f"InvtRefundList[{i}]/qty", "qty must be an amount")


def receipt_document(doc: dict) -> dict:
    """The string fields a receipt copies from the document it answers."""
    return {k: doc[k].strip() for k in _RECEIPT_FIELDS if isinstance(doc.get(k), str) and doc[k].strip()}


def parcel_from_arrival(arrival: dict) -> dict:
    """A ``sandan.WarehouseArrival`` as a parcel of the return state (``sandan.ReturnsParcel``)."""
    arrival_id = _text(arrival, "arrivalId", "WarehouseArrival")
    logistics_no = _text(arrival, "logisticsNo", "WarehouseArrival")
    sorting = (arrival.get("sorting") or "").strip().lower()
    if sorting not in SORTINGS:
        raise InputError(INVALID_FIELD, "WarehouseArrival/sorting", f"sorting must be one of {', '.join(SORTINGS)}")
    if not isinstance(arrival.get("arrivedAt"), int) or arrival["arrivedAt"] <= 0:
        raise InputError(INVALID_FIELD, "WarehouseArrival/arrivedAt", "arrivedAt must be ms since the epoch")
    lines = []
    for i, line in enumerate(arrival.get("lines") or (), 1):
        where = f"WarehouseArrival/lines[{i}]"
        lines.append({"gnum": _gnum(line, where), "qty": _amount(line, "qty", where, positive=True)})
    return {"arrivalId": arrival_id, "logisticsCode": (arrival.get("logisticsCode") or "").strip() or None,
            "logisticsNo": logistics_no, "lines": lines, "sorting": sorting,
            "warehouseCode": (arrival.get("warehouseCode") or "").strip(), "arrivedAt": arrival["arrivedAt"]}
