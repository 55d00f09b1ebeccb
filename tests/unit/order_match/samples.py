"""A hand-built consistent declaration (DOMAIN §3's worked example) and helpers to bend it.

Goods 300 (two VAT-only lines: 2 x 100.00 milk powder, 1 x 100.00 fish oil) + freight 10:
P = 310, VAT 28.21, taxTotal 28.21, acturalPaid 338.21 = payment amountPaid.
"""
from __future__ import annotations

from decimal import Decimal

from services.order_match.rules import RuleSettings, declaration_tax, evaluate

D = Decimal
EBP = "91330106MA27XK5W3B"
EBC = "91330106MA2H3D7P5N"
PAY = "91310000MA1FL3PA4T"
CARRIER = "91310000MA1GLX0073"
AGENT = "91330106MA28BG4T1M"
BUYER = {"name": "张伟", "id": "330106198803157719", "phone": "13812345678",
         "address": "浙江省杭州市西湖区文三路90号3栋502室"}


def base_documents() -> dict:
    order_lines = [
        {"gnum": 1, "itemNo": "SKU190110", "itemName": "婴幼儿配方奶粉", "gmodel": "900g/罐 1段", "unit": "122",
         "qty": D("2"), "price": D("100.00"), "totalPrice": D("200.00"), "currency": "142", "country": "609"},
        {"gnum": 2, "itemNo": "SKU210690", "itemName": "鱼油软胶囊", "gmodel": "100粒/瓶", "unit": "142",
         "qty": D("1"), "price": D("100.00"), "totalPrice": D("100.00"), "currency": "142", "country": "502"},
    ]
    inventory_lines = [
        {"gnum": 1, "itemNo": "SKU190110", "gcode": "1901101000", "gname": "婴幼儿配方奶粉", "gmodel": "900g/罐 1段",
         "country": "609", "currency": "142", "qty": D("2"), "unit": "122", "qty1": D("1.8"), "unit1": "035",
         "price": D("100.00"), "totalPrice": D("200.00")},
        {"gnum": 2, "itemNo": "SKU210690", "gcode": "2106909090", "gname": "鱼油软胶囊", "gmodel": "100粒/瓶",
         "country": "502", "currency": "142", "qty": D("1"), "unit": "142", "qty1": D("0.2"), "unit1": "035",
         "price": D("100.00"), "totalPrice": D("100.00")},
    ]
    order = {"message": "CEB311", "guid": "7F1C6D2E-3B4A-4C5D-8E9F-0A1B2C3D4E5F", "appType": "1",
             "appTime": "20250303091500", "appStatus": "2", "orderType": "I", "orderNo": "SO2025030300001",
             "ebpCode": EBP, "ebpName": "杭州海淘优选网络科技有限公司", "ebcCode": EBC, "ebcName": "杭州优品进口贸易有限公司",
             "goodsValue": D("300.00"), "freight": D("10.00"), "discount": D("0"), "taxTotal": D("28.21"),
             "acturalPaid": D("338.21"), "currency": "142", "buyerRegNo": "U100200300",
             "buyerName": BUYER["name"], "buyerTelephone": BUYER["phone"], "buyerIdType": "1",
             "buyerIdNumber": BUYER["id"], "payCode": PAY, "payName": "上海云付网络支付有限公司",
             "payTransactionId": "PAY202503030915000001", "consignee": BUYER["name"],
             "consigneeTelephone": BUYER["phone"], "consigneeAddress": BUYER["address"], "lines": order_lines}
    payment = {"message": "CEB411", "guid": "0B1C2D3E-4F5A-4B6C-8D7E-9F0A1B2C3D4E", "appType": "1",
               "appTime": "20250303091600", "appStatus": "2", "payCode": PAY, "payName": "上海云付网络支付有限公司",
               "payTransactionId": "PAY202503030915000001", "orderNo": "SO2025030300001", "ebpCode": EBP,
               "ebpName": "杭州海淘优选网络科技有限公司", "payerIdType": "1", "payerIdNumber": BUYER["id"],
               "payerName": BUYER["name"], "telephone": BUYER["phone"], "amountPaid": D("338.21"),
               "currency": "142", "payTime": "20250303091530"}
    logistics = {"message": "CEB511", "guid": "1C2D3E4F-5A6B-4C7D-8E9F-0A1B2C3D4E5F", "appType": "1",
                 "appTime": "20250303120000", "appStatus": "2", "logisticsCode": CARRIER,
                 "logisticsName": "上海速达国际物流有限公司", "logisticsNo": "SD250303000000101", "orderNo": "SO2025030300001",
                 "freight": D("10.00"), "insuredFee": D("0"), "currency": "142", "weight": D("2.35"), "packNo": 1,
                 "consignee": BUYER["name"], "consigneeAddress": BUYER["address"],
                 "consigneeTelephone": BUYER["phone"]}
    inventory = {"message": "CEB621", "guid": "2D3E4F5A-6B7C-4D8E-9F0A-1B2C3D4E5F6A", "appType": "1",
                 "appTime": "20250303130000", "appStatus": "2", "orderNo": "SO2025030300001",
                 "ebpCode": EBP, "ebpName": "杭州海淘优选网络科技有限公司", "ebcCode": EBC, "ebcName": "杭州优品进口贸易有限公司",
                 "logisticsNo": "SD250303000000101", "logisticsCode": CARRIER, "logisticsName": "上海速达国际物流有限公司",
                 "copNo": "C2503030000001", "assureCode": AGENT, "ieFlag": "I", "declTime": "20250303",
                 "customsCode": "2991", "portCode": "2991", "buyerIdType": "1", "buyerIdNumber": BUYER["id"],
                 "buyerName": BUYER["name"], "buyerTelephone": BUYER["phone"], "consigneeAddress": BUYER["address"],
                 "agentCode": AGENT, "agentName": "杭州报关通代理有限公司", "tradeMode": "9610", "trafMode": "5",
                 "trafNo": "CA0988", "voyageNo": "20250303", "billNo": "999-12345675", "country": "609",
                 "freight": D("10.00"), "insuredFee": D("0"), "currency": "142", "packNo": 1,
                 "grossWeight": D("2.35"), "netWeight": D("2.0"), "lines": inventory_lines}
    return {"order": order, "payment": payment, "logistics": logistics, "inventory": inventory}


def run(docs: dict, rates, settings=None, year_to_date=None):
    return evaluate(docs["order"], docs["payment"], docs["logistics"], docs["inventory"],
                    year_to_date=year_to_date, settings=settings or RuleSettings(), rates=rates)


def set_line(docs: dict, index: int, *, price: Decimal, qty: Decimal | None = None) -> None:
    """Change a line's price (and qty) on the order and the inventory alike."""
    for kind in ("order", "inventory"):
        line = docs[kind]["lines"][index]
        line["price"] = price
        if qty is not None:
            line["qty"] = qty
        line["totalPrice"] = line["price"] * line["qty"]


def make_consistent(docs: dict, rates) -> None:
    """Recompute goodsValue, taxTotal, acturalPaid and amountPaid after amounts changed."""
    order = docs["order"]
    order["goodsValue"] = sum((line["totalPrice"] for line in order["lines"]), D(0))
    order["taxTotal"] = declaration_tax(order, docs["inventory"], rates).total
    order["acturalPaid"] = order["goodsValue"] + order["freight"] + order["taxTotal"] - order["discount"]
    docs["payment"]["amountPaid"] = order["acturalPaid"]
