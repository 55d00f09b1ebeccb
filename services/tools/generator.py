"""Realistic declaration sets (order, payment, waybill, inventory) for tests, demos and load.

Everything is drawn from one seeded ``random.Random``, so a seed names a data set. Each set
holds four consistent documents in the document shape of ``services.common.documents``
with every required field of the 202205 standard filled, and the order's ``taxTotal``
computed by ``order_match.tax`` so a clean set verifies. A share of the sets carries exactly
one injected fault; the fault is surgical (it breaks one rule and keeps every other sum
consistent), and ``expected_codes`` names exactly the rule codes ``rules.evaluate`` must
report for it. Faults never touch a join key (``ebpCode`` and ``orderNo`` of order, payment
and inventory; the inventory's ``logisticsCode``/``logisticsNo`` that the waybill joins by):
a broken key splits the set into incomplete declarations in the streaming matcher instead of
giving the expected verdict, so such breaks are left to hand-written tests. Buyers come from a fixed pool so callers can drive a buyer's annual total.
A clean set goes to a buyer with room for its taxable value under the annual limit while any buyer
of the pool has room, so its expected verdict holds in whatever order the sets are decided (with
one buyer, or a pool full, the drawn buyer keeps it: callers that drive a total past the limit).

Shares are given as a string or Decimal fraction (``"0.1"``) or an int percentage (``10``),
never a float: amounts and shares here are integers of cents or Decimals throughout.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from services.common import config
from services.common import codes
from services.common.rates import RateTable, load_rates
from services.order_match.rules import declaration_tax

FAULTS = (
    codes.ORDER_TOTAL, codes.ORDER_LINES, codes.PAYMENT_AMOUNT, codes.PAYER_IDENTITY,
    codes.PAYMENT_REFERENCE, codes.CONSIGNEE, codes.INVENTORY_PARTIES, codes.INVENTORY_BUYER,
    codes.INVENTORY_LINES, codes.FIXED_VALUES, codes.ASSURE_CODE, codes.TAX_TOTAL, codes.SINGLE_LIMIT,
)
DEFAULT_START = datetime(2025, 3, 3, 9, 0, 0)

# Enterprise codes are 18-character unified social credit codes (fictitious).
PLATFORMS = (("91330106MA27XK5W3B", "杭州海淘优选网络科技有限公司"),
             ("91440300MA5F8RLQ2K", "深圳环球购电子商务有限公司"),
             ("91310115MA1H9TQ04X", "上海跨境云购信息技术有限公司"))
MERCHANTS = (("91330106MA2H3D7P5N", "杭州优品进口贸易有限公司"),
             ("91440300MA5G2UJ81R", "深圳全球优选供应链有限公司"),
             ("91310115MA1K4E6Y9C", "上海海外直采贸易有限公司"),
             ("91500000MA60BXY37L", "重庆寰球商品进出口有限公司"))
PAYMENT_FIRMS = (("91310000MA1FL3PA4T", "上海云付网络支付有限公司"),
                 ("91440300MA5DQ7PY2Q", "深圳融通支付科技有限公司"))
CARRIERS = (("91310000MA1GLX0073", "上海速达国际物流有限公司", "SD"),
            ("91440300MA5EXP9K2H", "深圳环宇快递有限公司", "HY"),
            ("91330100MA2CNL8R6F", "杭州中联跨境物流有限公司", "ZL"))
AGENTS = (("91330106MA28BG4T1M", "杭州报关通代理有限公司"),
          ("91440300MA5HCB6V3J", "深圳关务通报关有限公司"))
WAREHOUSES = (("91330100MA2AREA01X", "杭州综保区跨境仓储有限公司", "T2991W000118"),
              ("91440300MA5WH0027P", "深圳前海保税仓储有限公司", "T5349W000305"))
OUTSIDERS = ("91110000MA00XQ5R7E", "91120116MA05LK2D3W")  # codes no party of a set uses
PORTS = (("2991", "2991"), ("5349", "5349"), ("2244", "2244"))

# gcode, itemName, gmodel, unit, unit1, legal qty per unit, kg per unit, price range (fen), origin
CATALOGUE = (
    ("3304990099", "保湿面霜", "50ml/瓶 护肤用 品牌:露华 成分:透明质酸", "142", "035", "0.05", "0.12", 8000, 89000, "116"),
    ("3304100091", "丝绒唇膏", "3.5g/支 唇部用 品牌:绯色 色号:999", "142", "035", "0.0035", "0.03", 15000, 39000, "305"),
    ("3303000020", "淡香水", "100ml/瓶 香型:花香 品牌:蔚蓝", "142", "035", "0.1", "0.35", 30000, 150000, "305"),
    ("7113191900", "18K金项链", "18K金 长45cm 品牌:星辰", "011", "036", "3.5", "0.05", 80000, 150000, "116"),
    ("7116100000", "珍珠手链", "淡水珍珠 8mm 银扣", "011", "035", "0.03", "0.08", 20000, 90000, "601"),
    ("1901101000", "婴幼儿配方奶粉", "900g/罐 1段 0-6个月 牛乳基", "122", "035", "0.9", "1.1", 15000, 45000, "609"),
    ("2106909090", "鱼油软胶囊", "100粒/瓶 每粒1000mg 深海鱼油", "142", "035", "0.2", "0.3", 9000, 30000, "502"),
    ("0409000000", "麦卢卡蜂蜜", "500g/罐 UMF10+", "122", "035", "0.5", "0.7", 12000, 40000, "609"),
    ("6403990090", "运动鞋", "皮革面 橡胶底 尺码42 品牌:疾风", "025", "025", "1", "0.9", 30000, 120000, "502"),
    ("8509809000", "电动牙刷", "声波式 充电 品牌:皓齿", "011", "011", "1", "0.4", 20000, 80000, "304"),
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊洋艳勇军杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉"
REGIONS = (("310115", "上海市", "浦东新区"), ("330106", "浙江省杭州市", "西湖区"),
           ("440305", "广东省深圳市", "南山区"), ("110105", "北京市", "朝阳区"),
           ("510107", "四川省成都市", "武侯区"), ("420106", "湖北省武汉市", "武昌区"),
           ("320106", "江苏省南京市", "鼓楼区"))
ROADS = ("世纪大道", "文三路", "科技园南路", "建国路", "人民南路", "中山路", "解放大道", "学院路")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class Person:
    name: str
    id_number: str
    telephone: str
    address: str
    district: str
    reg_no: str


@dataclass(frozen=True)
class DeclarationSet:
    order: dict
    payment: dict
    logistics: dict
    inventory: dict
    expected_status: str
    expected_codes: frozenset[str]
    fault: str | None
    # Refusal sets (``with_refusals``) only: every document to send, in the order to send it;
    # the refusal codes its documents get; 2 to send once the others are decided; the kind
    # whose amount the caller breaks in the XML (the reader refuses it, as if it never came).
    sent: tuple[dict, ...] | None = None
    expected_refused: tuple[str, ...] = ()
    phase: int = 1
    xml_break: str | None = None
    expected_missing: tuple[str, ...] = ()
    later: tuple[dict, ...] = ()  # sent in phase 2, once the set's declaration is decided

    @property
    def documents(self) -> tuple[dict, ...]:
        return self.sent if self.sent is not None else (self.order, self.payment, self.logistics, self.inventory)


def generate(count: int, *, buyers: int = 100, fault_share: str | Decimal | int = "0.1", seed: int = 0,
             start: datetime = DEFAULT_START, bonded_share: str | Decimal | int = "0.3",
             rates: RateTable | None = None, single_limit: Decimal | None = None,
             annual_limit: Decimal | None = None) -> list[DeclarationSet]:
    """``count`` declaration sets; round(count × fault_share) of them carry one fault."""
    if count < 0 or buyers < 1:
        raise ValueError("count must be >= 0 and buyers >= 1")
    faults_share = _fraction(fault_share, "fault_share")
    bonded = _fraction(bonded_share, "bonded_share")
    rates = rates or load_rates()
    limit = single_limit if single_limit is not None else config.get_decimal("SANDAN_SINGLE_LIMIT")
    annual = annual_limit if annual_limit is not None else config.get_decimal("SANDAN_ANNUAL_LIMIT")
    rng = random.Random(seed)
    pool = _people(rng, buyers)
    spent = _Spent(pool, int(annual * 100))
    fault_count = int((Decimal(count) * faults_share).to_integral_value(rounding=ROUND_HALF_UP))
    faulty = set(rng.sample(range(count), fault_count))
    bonded_per_10000 = int(bonded * 10000)
    now = start
    sets = []
    for i in range(count):
        now += timedelta(seconds=rng.randint(1, 300))
        fault = rng.choice(FAULTS) if i in faulty else None
        builder = _SetBuilder(rng, i, now, pool, rng.randrange(10000) < bonded_per_10000, rates, limit, spent)
        sets.append(builder.build(fault))
    return sets


REFUSAL_KINDS = ("DUPLICATE", "APP_TIME", "FIELD", "WAYBILL_REUSED", "WITHDRAWN_FIRST", "CHANGED_FIRST", "LOCKED")


def with_refusals(sets: list[DeclarationSet]) -> list[DeclarationSet]:
    """The first fault-free sets turned into one case of each refusal kind (DOMAIN §2a), the
    rest unchanged; needs len(REFUSAL_KINDS) + 1 fault-free sets. The cases:

    * DUPLICATE: the inventory sent again as new (appType 1, another guid, a minute later);
    * APP_TIME: the payment dated 2099 (refused; the declaration ends INCOMPLETE without it);
    * FIELD: ``xml_break`` names the payment, whose amount the caller breaks in the XML;
    * WAYBILL_REUSED: waybill and inventory name the carrier number of an earlier set
      (phase 2: sent once that set is decided, so "first" is the same everywhere);
    * WITHDRAWN_FIRST: the order's withdrawal (same appTime) sent before the order;
    * CHANGED_FIRST: the payment's correction (same appTime, appType 2) sent before a
      payment whose amount is wrong;
    * LOCKED: the order's consignee changed (appType 2) a minute after the last of its
      documents, sent in phase 2 (``later``), once the declaration is verified.
    """
    clean = [i for i, s in enumerate(sets) if s.fault is None]
    if len(clean) < len(REFUSAL_KINDS) + 1:
        raise ValueError(f"with_refusals needs {len(REFUSAL_KINDS) + 1} fault-free sets, got {len(clean)}")
    out = list(sets)
    claimed = sets[clean[0]]
    for kind, i in zip(REFUSAL_KINDS, clean[1:]):
        s = sets[i]
        order, payment, logistics, inventory = (dict(d) for d in (s.order, s.payment, s.logistics, s.inventory))
        guid = f"{REFUSAL_KINDS.index(kind) + 1:08X}-0000-4000-8000-{i:012X}"
        if kind == "DUPLICATE":
            later = datetime.strptime(inventory["appTime"], "%Y%m%d%H%M%S") + timedelta(minutes=1)
            again = dict(inventory, guid=guid, appTime=f"{later:%Y%m%d%H%M%S}")
            out[i] = replace(s, sent=(order, payment, logistics, inventory, again), expected_refused=(codes.DUPLICATE,))
        elif kind == "APP_TIME":
            payment["appTime"] = "20990101000000"
            out[i] = replace(s, payment=payment, sent=(order, payment, logistics, inventory),
                             expected_status="incomplete", expected_codes=frozenset({codes.INCOMPLETE}),
                             expected_refused=(codes.APP_TIME,), expected_missing=("payment",))
        elif kind == "FIELD":
            out[i] = replace(s, sent=(order, payment, logistics, inventory), xml_break="payment",
                             expected_status="incomplete", expected_codes=frozenset({codes.INCOMPLETE}),
                             expected_missing=("payment",))  # refused by the reader, under its own code
        elif kind == "WAYBILL_REUSED":
            for doc in (logistics, inventory):
                doc["logisticsCode"] = claimed.logistics["logisticsCode"]
                doc["logisticsNo"] = claimed.logistics["logisticsNo"]
            logistics["logisticsName"] = inventory["logisticsName"] = claimed.logistics["logisticsName"]
            out[i] = replace(s, logistics=logistics, inventory=inventory, sent=(order, payment, logistics, inventory),
                             phase=2, expected_status="rejected", expected_codes=frozenset({codes.WAYBILL_REUSED}))
        elif kind == "WITHDRAWN_FIRST":
            withdrawal = dict(order, guid=guid, appType="3")
            out[i] = replace(s, sent=(withdrawal, order, payment, logistics, inventory),
                             expected_status="incomplete", expected_codes=frozenset({codes.INCOMPLETE}),
                             expected_missing=("order",))
        elif kind == "CHANGED_FIRST":
            wrong = dict(payment, amountPaid=payment["amountPaid"] + 1)
            change = dict(payment, guid=guid, appType="2")
            out[i] = replace(s, payment=change, sent=(order, change, wrong, logistics, inventory))
        else:  # LOCKED
            last = max(datetime.strptime(d["appTime"], "%Y%m%d%H%M%S") for d in (order, payment, logistics, inventory))
            change = dict(order, guid=guid, appType="2", appTime=f"{last + timedelta(minutes=1):%Y%m%d%H%M%S}",
                          consignee=order["consignee"] + "X")
            out[i] = replace(s, sent=(order, payment, logistics, inventory), later=(change,),
                             expected_refused=(codes.LOCKED,))
    return out


def _fraction(value, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise TypeError(f"{name}: give a fraction as str or Decimal, or an int percentage")
    try:
        share = Decimal(value) / 100 if isinstance(value, int) else Decimal(value)
    except ArithmeticError:
        raise ValueError(f"{name} {value!r} is not a decimal fraction") from None
    if not share.is_finite() or not (0 <= share <= 1):
        raise ValueError(f"{name} must be between 0 and 1 (or 0 and 100 as an int percentage)")
    return share


def _fen(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def _digits(rng: random.Random, n: int) -> str:
    return f"{rng.randrange(10 ** n):0{n}d}"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


def _phone(rng: random.Random) -> str:
    return "1" + rng.choice(("38", "39", "50", "58", "86", "87", "35", "37")) + _digits(rng, 8)


def _address(rng: random.Random, region: tuple[str, str, str]) -> str:
    return (f"{region[1]}{region[2]}{rng.choice(ROADS)}{rng.randint(1, 999)}号"
            f"{rng.randint(1, 30)}栋{rng.randint(1, 25)}{rng.randint(1, 8):02d}室")


def _id_number(rng: random.Random, region_code: str) -> str:
    """A well-formed (fake) 18-digit resident ID with a valid ISO 7064 check character."""
    birth = datetime(1960, 1, 1) + timedelta(days=rng.randint(0, 16000))
    body = f"{region_code}{birth:%Y%m%d}{_digits(rng, 3)}"
    return body + _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS)) % 11]


def _people(rng: random.Random, n: int) -> list[Person]:
    people, seen = [], set()
    while len(people) < n:
        region = rng.choice(REGIONS)
        id_number = _id_number(rng, region[0])
        if id_number in seen:
            continue
        seen.add(id_number)
        people.append(Person(_name(rng), id_number, _phone(rng), _address(rng, region), region[0],
                             f"U{_digits(rng, 10)}"))
    return people


def _other(rng: random.Random, make, current: str) -> str:
    """A freshly drawn value that differs from ``current`` (a surgical fault must change it)."""
    while True:
        value = make()
        if value != current:
            return value


class _Spent:
    """The taxable value (fen) of the clean sets given to each buyer so far: a clean set verifies
    and reserves it, whatever the other sets of its buyer and the order they are decided in, only
    while its buyer's sets stay within the annual limit together."""

    def __init__(self, pool, annual_fen: int) -> None:
        self.pool, self.annual_fen = pool, annual_fen
        self.fen: dict[str, int] = {}

    def buyer_for(self, drawn, taxable_fen: int):
        """``drawn``, or the buyer with the most room when ``drawn`` has too little (no random
        draw: every other value of the seed stays); recorded as spent."""
        buyer = drawn
        if self.fen.get(drawn.id_number, 0) + taxable_fen > self.annual_fen:
            roomiest = min(self.pool, key=lambda person: self.fen.get(person.id_number, 0))
            if self.fen.get(roomiest.id_number, 0) + taxable_fen <= self.annual_fen:
                buyer = roomiest
        self.fen[buyer.id_number] = self.fen.get(buyer.id_number, 0) + taxable_fen
        return buyer


class _SetBuilder:
    """Draws one declaration set; kept as a class so the fault injectors share its choices."""

    def __init__(self, rng, index, now, pool, bonded, rates, limit, spent: _Spent | None = None):
        self.rng, self.index, self.now, self.pool = rng, index, now, pool
        self.bonded, self.rates, self.limit, self.spent = bonded, rates, limit, spent

    def build(self, fault: str | None) -> DeclarationSet:
        rng = self.rng
        self.buyer = rng.choice(self.pool)
        self.consignee = self.buyer if rng.randrange(100) < 85 else rng.choice(self.pool)
        rng.choice(PLATFORMS)  # drawn and set aside: every other draw stays what it was for a seed
        # the platforms in turn: any three sets in a row have all three (the demo's payment-data
        # checks need verified declarations of three platforms, also in a dozen: drawn, 8 of 300
        # seeds of a 12-declaration demo had not)
        self.platform = PLATFORMS[self.index % len(PLATFORMS)]
        self.merchant = rng.choice(MERCHANTS)
        self.payer_firm = rng.choice(PAYMENT_FIRMS)
        self.carrier = rng.choice(CARRIERS)
        self.agent = rng.choice(AGENTS)
        self.warehouse = rng.choice(WAREHOUSES)
        self.port = rng.choice(PORTS)
        self._plan(fault == codes.SINGLE_LIMIT)
        if fault is None and self.spent is not None:  # a faulty set is rejected: it reserves nothing
            buyer = self.spent.buyer_for(self.buyer, self._goods() + self.freight + self.insured)
            self.consignee = buyer if self.consignee is self.buyer else self.consignee
            self.buyer = buyer
        order, payment, logistics, inventory = self._documents()
        expected = self._inject(fault, order, payment, logistics, inventory) if fault else frozenset()
        return DeclarationSet(order, payment, logistics, inventory,
                              "rejected" if expected else "verified", expected, fault)

    # --- amounts ---------------------------------------------------------------------

    def _plan(self, over_limit: bool) -> None:
        rng = self.rng
        products = rng.sample(CATALOGUE, rng.randint(1, 3))
        self.lines = [[p, rng.randint(1, 3), rng.randint(p[7], p[8])] for p in products]  # product, qty, price fen
        direct = not self.bonded
        self.freight = rng.choice((0, rng.randint(500, 3000))) if direct else rng.choice((0, 0, rng.randint(300, 1200)))
        self.insured = 0 if rng.randrange(100) < 70 else rng.randint(50, 500)
        limit_fen = int(self.limit * 100)
        extra = self.freight + self.insured
        while self._goods() + extra > limit_fen:
            biggest = max(self.lines, key=lambda line: line[1] * line[2])
            if biggest[1] > 1:
                biggest[1] = 1
            elif len(self.lines) > 1:
                self.lines.pop()
            else:
                biggest[2] = limit_fen - extra
        if over_limit:
            # The first line absorbs the excess at qty 1 so price x qty stays exact.
            others = self._goods() - self.lines[0][1] * self.lines[0][2]
            self.lines[0][1] = 1
            self.lines[0][2] = limit_fen - extra - others + rng.randint(1, 200000)
        goods = self._goods()
        self.discount = 0 if rng.randrange(100) < 80 else min(goods, rng.randint(100, 2000))

    def _goods(self) -> int:
        return sum(qty * price for _, qty, price in self.lines)

    # --- documents -------------------------------------------------------------------

    def _documents(self):
        rng, i, buyer, consignee = self.rng, self.index, self.buyer, self.consignee
        ordered = self.now
        paid_at = ordered + timedelta(seconds=rng.randint(5, 120))
        shipped = ordered + timedelta(minutes=rng.randint(60, 360))
        declared = shipped + timedelta(minutes=rng.randint(5, 120))
        order_no = f"SO{ordered:%Y%m%d}{_digits(rng, 6)}{i:06d}"
        logistics_no = f"{self.carrier[2]}{ordered:%y%m%d}{i:07d}{_digits(rng, 3)}"
        pay_transaction = f"{paid_at:%Y%m%d%H%M%S}{_digits(rng, 10)}{i:06d}"
        goods = _fen(self._goods())
        freight, insured = _fen(self.freight), _fen(self.insured)
        net = sum((Decimal(p[6]) * qty for p, qty, _ in self.lines), Decimal(0))
        gross = net + Decimal("0.15")

        order_lines, inventory_lines = [], []
        for gnum, (p, qty_int, price_fen) in enumerate(self.lines, 1):
            gcode, name, model, unit, unit1, legal, _, _, _, origin = p
            qty, price = Decimal(qty_int), _fen(price_fen)
            sku = f"SKU{gcode[:6]}{CATALOGUE.index(p):02d}"
            bar = f"69{gcode[:4]}{CATALOGUE.index(p):07d}"
            order_lines.append({"gnum": gnum, "itemNo": sku, "itemName": name, "gmodel": model,
                                "barCode": bar, "unit": unit, "qty": qty, "price": price,
                                "totalPrice": price * qty, "currency": "142", "country": origin})
            line = {"gnum": gnum, "itemNo": sku, "itemName": name, "gcode": gcode, "gname": name,
                    "gmodel": model, "barCode": bar, "country": origin, "currency": "142", "qty": qty,
                    "unit": unit, "qty1": Decimal(legal) * qty, "unit1": unit1, "price": price,
                    "totalPrice": price * qty}
            if self.bonded:
                line["itemRecordNo"] = f"JX{gcode}{CATALOGUE.index(p):03d}"
            inventory_lines.append(line)

        order = {"message": "CEB311", "guid": _guid(rng), "appType": "1", "appTime": f"{ordered:%Y%m%d%H%M%S}",
                 "appStatus": "2", "orderType": "I", "orderNo": order_no,
                 "ebpCode": self.platform[0], "ebpName": self.platform[1],
                 "ebcCode": self.merchant[0], "ebcName": self.merchant[1],
                 "goodsValue": goods, "freight": freight, "discount": _fen(self.discount),
                 "taxTotal": Decimal("0.00"), "acturalPaid": Decimal("0.00"), "currency": "142",
                 "buyerRegNo": buyer.reg_no, "buyerName": buyer.name, "buyerTelephone": buyer.telephone,
                 "buyerIdType": "1", "buyerIdNumber": buyer.id_number,
                 "payCode": self.payer_firm[0], "payName": self.payer_firm[1],
                 "payTransactionId": pay_transaction,
                 "consignee": consignee.name, "consigneeTelephone": consignee.telephone,
                 "consigneeAddress": consignee.address, "consigneeDistrict": consignee.district,
                 "lines": order_lines}
        payment = {"message": "CEB411", "guid": _guid(rng), "appType": "1", "appTime": f"{paid_at + timedelta(seconds=30):%Y%m%d%H%M%S}",
                   "appStatus": "2", "payCode": self.payer_firm[0], "payName": self.payer_firm[1],
                   "payTransactionId": pay_transaction, "orderNo": order_no,
                   "ebpCode": self.platform[0], "ebpName": self.platform[1],
                   "payerIdType": "1", "payerIdNumber": buyer.id_number, "payerName": buyer.name,
                   "telephone": buyer.telephone, "amountPaid": Decimal("0.00"), "currency": "142",
                   "payTime": f"{paid_at:%Y%m%d%H%M%S}"}
        logistics = {"message": "CEB511", "guid": _guid(rng), "appType": "1", "appTime": f"{shipped:%Y%m%d%H%M%S}",
                     "appStatus": "2", "logisticsCode": self.carrier[0], "logisticsName": self.carrier[1],
                     "logisticsNo": logistics_no, "orderNo": order_no, "freight": freight, "insuredFee": insured,
                     "currency": "142", "weight": gross, "packNo": 1,
                     "goodsInfo": "；".join(f"{line['itemName']}x{line['qty']}" for line in order_lines),
                     "consignee": consignee.name, "consigneeAddress": consignee.address,
                     "consigneeTelephone": consignee.telephone}
        inventory = {"message": "CEB621", "guid": _guid(rng), "appType": "1", "appTime": f"{declared:%Y%m%d%H%M%S}",
                     "appStatus": "2", "orderNo": order_no,
                     "ebpCode": self.platform[0], "ebpName": self.platform[1],
                     "ebcCode": self.merchant[0], "ebcName": self.merchant[1],
                     "logisticsNo": logistics_no, "logisticsCode": self.carrier[0], "logisticsName": self.carrier[1],
                     "copNo": f"C{ordered:%y%m%d}{i:07d}{_digits(rng, 4)}",
                     "assureCode": rng.choice((self.merchant[0], self.merchant[0], self.agent[0], self.carrier[0])),
                     "ieFlag": "I", "declTime": f"{declared:%Y%m%d}",
                     "customsCode": self.port[0], "portCode": self.port[1],
                     "buyerIdType": "1", "buyerIdNumber": buyer.id_number, "buyerName": buyer.name,
                     "buyerTelephone": buyer.telephone, "consigneeAddress": consignee.address,
                     "agentCode": self.agent[0], "agentName": self.agent[1],
                     "tradeMode": "1210" if self.bonded else "9610",
                     "country": "142" if self.bonded else order_lines[0]["country"],
                     "freight": freight, "insuredFee": insured, "currency": "142", "packNo": 1,
                     "grossWeight": gross, "netWeight": net, "lines": inventory_lines}
        if self.bonded:
            inventory.update({"emsNo": self.warehouse[2], "areaCode": self.warehouse[0],
                              "areaName": self.warehouse[1], "trafMode": "4"})
        else:
            flight = f"{rng.choice(('CA', 'MU', 'CZ', 'NH', 'KE'))}{_digits(rng, 4)}"
            inventory.update({"trafMode": "5", "trafNo": flight, "voyageNo": f"{ordered:%Y%m%d}",
                              "billNo": f"{_digits(rng, 3)}-{_digits(rng, 8)}",
                              "ieDate": f"{ordered:%Y%m%d}"})
            logistics["billNo"] = inventory["billNo"]

        tax = declaration_tax(order, inventory, self.rates).total
        paid = goods + freight + tax - order["discount"]
        order["taxTotal"] = tax
        order["acturalPaid"] = paid
        payment["amountPaid"] = paid
        return order, payment, logistics, inventory

    # --- faults ----------------------------------------------------------------------

    def _inject(self, fault: str, order, payment, logistics, inventory) -> frozenset[str]:
        rng = self.rng
        expected = {fault}
        if fault == codes.ORDER_TOTAL:
            delta = _fen(rng.randint(1, 999))
            order["acturalPaid"] += delta
            payment["amountPaid"] += delta  # keeps PAYMENT_AMOUNT clean
        elif fault == codes.ORDER_LINES:
            rng.choice(order["lines"])["price"] += _fen(rng.randint(1, 500))
        elif fault == codes.PAYMENT_AMOUNT:
            payment["amountPaid"] += _fen(rng.randint(1, 999))
        elif fault == codes.PAYER_IDENTITY:
            self._change_person_field(payment, {"payerName": self._other_name, "payerIdNumber": self._other_id,
                                                "payerIdType": lambda _: "2"})
        elif fault == codes.PAYMENT_REFERENCE:
            if rng.randrange(2):
                payment["payCode"] = _other(rng, lambda: rng.choice(PAYMENT_FIRMS)[0], payment["payCode"])
            else:
                current = payment["payTransactionId"]
                payment["payTransactionId"] = _other(rng, lambda: current[:-6] + _digits(rng, 6), current)
        elif fault == codes.CONSIGNEE:
            self._change_person_field(logistics, {"consignee": self._other_name,
                                                  "consigneeTelephone": self._other_phone,
                                                  "consigneeAddress": self._other_address})
        elif fault == codes.INVENTORY_PARTIES:
            inventory["ebcCode"] = _other(rng, lambda: rng.choice(MERCHANTS)[0], inventory["ebcCode"])
            parties = {inventory[k] for k in ("ebpCode", "ebcCode", "logisticsCode", "agentCode")}
            if inventory["assureCode"] not in parties:
                expected.add(codes.ASSURE_CODE)  # the changed code was also the guarantor
        elif fault == codes.INVENTORY_BUYER:
            self._change_person_field(inventory, {"buyerName": self._other_name, "buyerIdNumber": self._other_id,
                                                  "buyerTelephone": self._other_phone,
                                                  "buyerIdType": lambda _: "2"})
        elif fault == codes.INVENTORY_LINES:
            line = rng.choice(inventory["lines"])
            variant = rng.choice(("gname", "qty", "gnum"))
            if variant == "gname":
                line["gname"] += "（赠品）"
            elif variant == "qty":
                line["qty"] += 1
            else:
                inventory["lines"][-1]["gnum"] = len(inventory["lines"]) + 1
        elif fault == codes.FIXED_VALUES:
            self._break_fixed_value(order, payment, logistics, inventory)
        elif fault == codes.ASSURE_CODE:
            inventory["assureCode"] = rng.choice(OUTSIDERS)
        elif fault == codes.TAX_TOTAL:
            delta = _fen(rng.randint(100, 2000))
            if order["taxTotal"] >= delta and rng.randrange(2):
                delta = -delta
            for doc, key in ((order, "taxTotal"), (order, "acturalPaid"), (payment, "amountPaid")):
                doc[key] += delta
        elif fault != codes.SINGLE_LIMIT:  # SINGLE_LIMIT is built into the amounts
            raise ValueError(f"no injector for fault {fault}")
        return frozenset(expected)

    def _change_person_field(self, doc: dict, changers: dict) -> None:
        key = self.rng.choice(sorted(changers))
        doc[key] = changers[key](doc[key])

    def _other_name(self, current: str) -> str:
        return _other(self.rng, lambda: _name(self.rng), current)

    def _other_id(self, current: str) -> str:
        return _other(self.rng, lambda: _id_number(self.rng, self.rng.choice(REGIONS)[0]), current)

    def _other_phone(self, current: str) -> str:
        return _other(self.rng, lambda: _phone(self.rng), current)

    def _other_address(self, current: str) -> str:
        return _other(self.rng, lambda: _address(self.rng, self.rng.choice(REGIONS)), current)

    def _break_fixed_value(self, order, payment, logistics, inventory) -> None:
        rng = self.rng
        choices = [
            lambda: order.update(currency="502"),
            lambda: rng.choice(order["lines"]).update(currency="502"),
            lambda: payment.update(currency="110"),
            lambda: logistics.update(currency="502"),
            lambda: inventory.update(currency="502"),
            lambda: rng.choice(inventory["lines"]).update(currency="110"),
            lambda: order.update(orderType="E"),
            lambda: inventory.update(ieFlag="E"),
            lambda: inventory.update(packNo=2),
            lambda: logistics.update(packNo=3),
            lambda: inventory.update(tradeMode="9710"),
        ]
        if self.bonded:
            choices += [lambda: inventory.pop("emsNo"), lambda: inventory.pop("areaCode"),
                        lambda: rng.choice(inventory["lines"]).pop("itemRecordNo")]
        rng.choice(choices)()
