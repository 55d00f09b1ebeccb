"""Records the returns service reads, built small and complete (every field the Avro schemas need).

The declaration is DOMAIN §3's worked example: goods 300 (gnum 1: 2 x 100.00, gnum 2: 1 x
100.00) + freight 10, so P = 310.00 and the tax 28.21. Release is 2025-03-10 10:00 China time.
"""
from __future__ import annotations

from decimal import Decimal

from services.returns.policy import app_time_ms

D = Decimal
ORDER = "SO2025030300001"
EBP = "91330106MA27XK5W3B"
AGENT = "91330106MA28BG4T1M"
CARRIER = "91310000MA1GLX0073"
WAYBILL = "SD250303000000101"
BUYER = "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0"
WAREHOUSE = "91330100MA2AREA01X"
RELEASE_TEXT = "20250310100000"
RELEASE = app_time_ms(RELEASE_TEXT)
CLEARED = app_time_ms("20250303140000")

from services.common.rates import load_rates

RATES = load_rates()  # the shipped table: 13% VAT; 3304 make-up also 15% consumption tax


def at(text: str) -> int:
    return app_time_ms(text)


def verdict(order_no: str = ORDER, *, ebp: str = EBP, tax: str = "28.21", taxable: str = "310.00",
            lines=((1, "2", "200.00"), (2, "1", "100.00")), waybill: str = WAYBILL, carrier: str = CARRIER,
            buyer: str | None = BUYER, year: int | None = 2025, assure: str = AGENT) -> dict:
    inventory = {"message": "CEB621", "guid": f"INV-{order_no}", "appType": "1", "appTime": "20250303130000",
                 "appStatus": "2", "orderNo": order_no, "ebpCode": ebp, "ebpName": "平台", "ebcCode": ebp,
                 "ebcName": "电商", "logisticsNo": waybill, "logisticsCode": carrier, "logisticsName": "物流",
                 "copNo": f"C-{order_no}", "assureCode": assure, "ieFlag": "I", "declTime": "20250303",
                 "customsCode": "2991", "portCode": "2991", "buyerIdType": "1", "buyerIdNumber": "330106198803157719",
                 "buyerName": "张伟", "buyerTelephone": "13812345678", "consigneeAddress": "杭州",
                 "agentCode": AGENT,
                 "agentName": "报关", "tradeMode": "9610", "trafMode": "5", "country": "609", "freight": D("10.00"),
                 "insuredFee": D("0"), "currency": "142", "packNo": 1, "grossWeight": D("2.35"), "netWeight": D("2.0"),
                 "lines": [{"gnum": g, "itemNo": f"SKU{g}", "gcode": "1901101000", "gname": f"商品{g}", "gmodel": "x",
                            "country": "609", "currency": "142", "qty": D(q), "unit": "122", "qty1": D(q),
                            "unit1": "035", "price": D(p) / D(q), "totalPrice": D(p)} for g, q, p in lines]}
    return {"declarationId": f"{ebp}:{order_no}", "ebpCode": ebp, "orderNo": order_no, "status": "verified",
            "failures": [], "missing": [], "customsTax": D(0), "consumptionTax": D(0), "valueAddedTax": D(tax),
            "taxTotal": D(tax), "taxableValue": D(taxable), "assureCode": assure, "buyerKey": buyer,
            "quotaYear": year, "inventory": inventory, "lastDocumentAt": CLEARED, "decidedAt": CLEARED}


def report(order_no: str = ORDER, *, ebp: str = EBP, status: str = "800", decided_at: int = RELEASE,
           report_id: str | None = None, invt_no: str | None = None) -> dict:
    return {"reportId": report_id or f"R-{order_no}-{status}-{decided_at}", "declarationId": f"{ebp}:{order_no}",
            "ebpCode": ebp, "orderNo": order_no, "invtNo": invt_no, "status": status, "reason": None,
            "decidedAt": decided_at, "reporter": "customs-test"}


def _head(message: str, guid: str, order_no: str, ebp: str, app_time: str, invt_no: str, reason: str) -> dict:
    return {"message": message, "guid": guid, "appType": "1", "appTime": app_time, "appStatus": "2",
            "customsCode": "2991", "orderNo": order_no, "ebpCode": ebp, "ebpName": "平台", "ebcCode": ebp,
            "ebcName": "电商", "logisticsNo": WAYBILL, "logisticsCode": CARRIER, "logisticsName": "物流",
            "copNo": f"C-{order_no}", "invtNo": invt_no, "buyerIdType": "1", "buyerIdNumber": "330106198803157719",
            "buyerName": "张伟", "buyerTelephone": "13812345678", "agentCode": AGENT, "agentName": "报关",
            "reason": reason}


def cancel(order_no: str = ORDER, *, guid: str = "CANCEL-1", ebp: str = EBP, app_time: str = "20250305090000",
           invt_no: str = "", reason: str = "消费者取消订单") -> dict:
    return _head("CEB623", guid, order_no, ebp, app_time, invt_no, reason)


def refund(order_no: str = ORDER, *, guid: str = "REFUND-1", lines=((1, "1"),), ebp: str = EBP,
           app_time: str = "20250315090000", invt_no: str = "") -> dict:
    doc = _head("CEB625", guid, order_no, ebp, app_time, invt_no, "商品破损")
    doc["lines"] = [{"gnum": g, "gcode": "1901101000", "gname": f"商品{g}", "qty": D(q), "unit": "122"}
                    for g, q in lines]
    return doc


def arrival(arrival_id: str = "ARR-1", *, waybill: str = WAYBILL, sorting: str = "fit", lines=(),
            arrived: str = "20250320100000", order_no: str | None = None, carrier: str | None = None) -> dict:
    return {"arrivalId": arrival_id, "logisticsCode": carrier, "logisticsNo": waybill, "orderNo": order_no,
            "lines": [{"gnum": g, "qty": D(q)} for g, q in lines], "sorting": sorting, "warehouseCode": WAREHOUSE,
            "arrivedAt": at(arrived)}


def delivery(guid: str = "DELIVERY-1", *, waybills=(WAYBILL,), app_time: str = "20250320100000") -> dict:
    return {"message": "CEB711", "guid": guid, "appType": "1", "appTime": app_time, "appStatus": "2",
            "customsCode": "2991", "operatorCode": WAREHOUSE, "operatorName": "退货中心仓", "ieFlag": "I",
            "trafMode": "5", "trafNo": "CA1234", "voyageNo": "20250320", "billNo": "999-12345675",
            "logisticsCode": CARRIER, "logisticsName": "物流",
            "lines": [{"gnum": i, "logisticsNo": w} for i, w in enumerate(waybills, 1)]}
