"""Returned parcels as ``sandan.WarehouseArrival`` records: from the command line and from CEB711.

A CEB711 (warehouse entry detail) names parcels by waybill on its ``DeliveryList`` lines; each
line is taken as the arrival of the whole parcel, fit for resale *(decision: the message has
no sorting result)*, at the message's ``appTime``. Its arrival id is derived from the CEB711
guid and the waybill number, so a redelivered message names the same arrivals.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from services.common.money import ZERO
from services.returns import policy


def parse_lines(text: str) -> list[dict]:
    """``"1:2,2:1"`` (gnum:qty, ...) → arrival lines; ValueError says what is wrong."""
    lines = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        gnum, sep, qty = part.partition(":")
        try:
            number, amount = int(gnum), Decimal(qty.strip())
        except (ValueError, InvalidOperation):
            number, amount = 0, ZERO
        if not sep or number < 1 or not amount.is_finite() or amount <= ZERO:
            raise ValueError(f"{part!r}: give each line as gnum:qty with a positive gnum and qty (e.g. 1:2,2:1)")
        lines.append({"gnum": number, "qty": amount})
    return lines


def arrival_record(*, logistics_no: str, sorting: str, arrived_at: int, warehouse_code: str,
                   lines: list[dict] | None = None, logistics_code: str | None = None,
                   order_no: str | None = None, arrival_id: str | None = None) -> dict:
    """A WarehouseArrival; without an id it is named by waybill and time (the same report twice is one)."""
    return {"arrivalId": arrival_id or f"{warehouse_code}:{logistics_no}:{arrived_at}",
            "logisticsCode": logistics_code, "logisticsNo": logistics_no, "orderNo": order_no,
            "lines": list(lines or ()), "sorting": sorting, "warehouseCode": warehouse_code, "arrivedAt": arrived_at}


def arrivals_from_delivery(doc: dict) -> list[dict]:
    """One whole-parcel, fit arrival per waybill a CEB711 names."""
    at = policy.app_time_ms(doc["appTime"])
    numbers = dict.fromkeys((line.get("logisticsNo") or "").strip() for line in doc.get("lines") or ())
    return [arrival_record(logistics_no=number, sorting="fit", arrived_at=at,
                           warehouse_code=(doc.get("operatorCode") or "").strip(),
                           logistics_code=(doc.get("logisticsCode") or "").strip() or None,
                           arrival_id=f"CEB711:{doc['guid']}:{number}")
            for number in numbers if number]
