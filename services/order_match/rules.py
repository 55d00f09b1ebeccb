"""The match (三单对碰, DOMAIN §2): the rules decided by a declaration's four documents.

``evaluate`` takes the order (CEB311), payment (CEB411), waybill (CEB511) and inventory
(CEB621) as documents (``services.common.documents``), checks every rule that needs nothing
but those documents and the buyer's year-to-date taxable value, and lists every failure.
Rules that need history (DUPLICATE, LOCKED, WAYBILL_REUSED) and the timeout belong to the
caller.

Amounts compare as decimal values (``100`` equals ``100.00000``) and text after trimming
surrounding white space. Personal data never reaches a message: for names, ID numbers,
phones and addresses a failure says which field differs, not what it holds.

This is the hot path: one pass over each document, no copies, failures built only when a
rule fails.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation, localcontext

from services.common import config
from services.common.documents import DECLARATION_KINDS, MESSAGE_OF_KIND
from services.common.money import MAX_AMOUNT, ZERO, plain
from services.common import codes
from services.common.rates import RateTable
from services.common.tax import TaxResult, compute_tax
from services.common.verdict import INCOMPLETE, REJECTED, VERIFIED, Failure, Verdict

CNY = "142"
ID_CARD = "1"
DIRECT = "9610"
BONDED = "1210"
_HEAD_OF_KIND = {"order": "OrderHead", "payment": "PaymentHead", "logistics": "LogisticsHead",
                 "inventory": "InventoryHead"}
# Products of two 19-digit amounts have 38 digits; enough room that nothing here rounds.
_EXACT = Context(prec=60)


@dataclass(frozen=True)
class RuleSettings:
    tax_tolerance: Decimal = Decimal("0.05")
    single_limit: Decimal = Decimal(5000)
    annual_limit: Decimal = Decimal(26000)

    @classmethod
    def from_env(cls) -> RuleSettings:
        return cls(tax_tolerance=config.get_decimal("SANDAN_TAX_TOLERANCE"),
                   single_limit=config.get_decimal("SANDAN_SINGLE_LIMIT"),
                   annual_limit=config.get_decimal("SANDAN_ANNUAL_LIMIT"))


def evaluate(order: Mapping | None, payment: Mapping | None, logistics: Mapping | None,
             inventory: Mapping | None, *, year_to_date: Decimal | None, settings: RuleSettings,
             rates: RateTable) -> Verdict:
    """The verdict on one declaration; ``year_to_date`` None skips the annual limit."""
    ebp_code, order_no = _key(order, payment, logistics, inventory)
    documents = (order, payment, logistics, inventory)
    if None in documents:
        missing = tuple(kind for kind, doc in zip(DECLARATION_KINDS, documents) if doc is None)
        failures = tuple(Failure(codes.INCOMPLETE, _HEAD_OF_KIND[kind],
                                 f"no {kind} ({MESSAGE_OF_KIND[kind]}) has arrived") for kind in missing)
        return Verdict(INCOMPLETE, failures, missing, None, None, ebp_code, order_no)

    failures: list[Failure] = []
    add = failures.append
    with localcontext(_EXACT):
        order_lines = order.get("lines") or ()
        inventory_lines = inventory.get("lines") or ()
        _order_total(order, add)
        _order_lines(order, order_lines, add)
        _payment_amount(order, payment, add)
        _payer_identity(order, payment, add)
        _payment_reference(order, payment, add)
        _consignee(order, logistics, add)
        _inventory_parties(order, logistics, inventory, add)
        _inventory_buyer(order, inventory, add)
        _inventory_lines(order_lines, inventory_lines, add)
        _fixed_values(order, order_lines, payment, logistics, inventory, inventory_lines, add)
        _assure_code(inventory, add)
        tax = declaration_tax(order, inventory, rates)
        _tax_total(order, tax, settings.tax_tolerance, add)
        _limits(tax.taxable_value, year_to_date, settings, add)
        if not _amounts_in_range(tax, add):
            # Documents at the edge of the wire range add up beyond it: no record could carry
            # this tax, so the verdict names the failure and carries none.
            return Verdict(REJECTED, tuple(failures), (), None, None, ebp_code, order_no)
    status = REJECTED if failures else VERIFIED
    return Verdict(status, tuple(failures), (), tax, tax.taxable_value, ebp_code, order_no)


def declaration_tax(order: Mapping | None, inventory: Mapping, rates: RateTable) -> TaxResult:
    """Tax of a declaration: the order's goodsValue and freight, the inventory's insuredFee
    and the inventory's lines (see ``tax``); without an order, the inventory's own values."""
    lines = inventory.get("lines") or ()
    insured = _amount(inventory, "insuredFee") or ZERO
    if order is None:
        return compute_tax(lines, _amount(inventory, "freight"), insured, rates)
    return compute_tax(lines, _amount(order, "freight"), insured, rates,
                       goods_value=_amount(order, "goodsValue"))


def taxable_value(order: Mapping | None, inventory: Mapping | None) -> Decimal:
    """P = goodsValue + freight (the order's) + insuredFee (the inventory's, 0 if absent);
    without an order, Σ inventory line totalPrice and the inventory's freight."""
    with localcontext(_EXACT):
        insured = (_amount(inventory, "insuredFee") if inventory is not None else None) or ZERO
        if order is not None:
            goods = _amount(order, "goodsValue") or ZERO
            freight = _amount(order, "freight") or ZERO
        elif inventory is not None:
            goods = sum((_amount(line, "totalPrice") or ZERO for line in inventory.get("lines") or ()), ZERO)
            freight = _amount(inventory, "freight") or ZERO
        else:
            return ZERO
        return goods + freight + insured


def _amounts_in_range(tax: TaxResult, add) -> bool:
    computed = (("taxableValue", tax.taxable_value), ("taxTotal", tax.total), ("customsTax", tax.customs),
                ("consumptionTax", tax.consumption), ("valueAddedTax", tax.vat))
    beyond = [name for name, value in computed if abs(value) > MAX_AMOUNT]
    if beyond:
        add(Failure(codes.AMOUNT_RANGE, "InventoryHead", f"{', '.join(beyond)} beyond ±{plain(MAX_AMOUNT)} CNY:"
                                                        " the declared amounts add up to more than a record carries"))
    return not beyond


def buyer_id(document: Mapping) -> tuple[str, str]:
    """(buyerIdType, buyerIdNumber) of an order or inventory, trimmed: the annual-limit key."""
    return _text(document, "buyerIdType"), _text(document, "buyerIdNumber")


# --- the rules -------------------------------------------------------------------------

def _order_total(order, add) -> None:
    paid = _amount(order, "acturalPaid")
    expected = ((_amount(order, "goodsValue") or ZERO) + (_amount(order, "freight") or ZERO)
                + (_amount(order, "taxTotal") or ZERO) - (_amount(order, "discount") or ZERO))
    if paid != expected:
        add(Failure(codes.ORDER_TOTAL, "OrderHead/acturalPaid",
                    f"acturalPaid {_money(paid)} but goodsValue + freight + taxTotal - discount"
                    f" = {_money(expected)}"))


def _order_lines(order, lines, add) -> None:
    if not lines:
        add(Failure(codes.ORDER_LINES, "OrderList", "the order has no lines"))
    line_sum = ZERO
    for i, line in enumerate(lines, 1):
        total = _amount(line, "totalPrice")
        price = _amount(line, "price")
        qty = _amount(line, "qty")
        if total is None:
            add(Failure(codes.ORDER_LINES, f"OrderList[{i}]/totalPrice", "totalPrice is missing"))
            continue
        line_sum += total
        if price is None or qty is None:
            add(Failure(codes.ORDER_LINES, f"OrderList[{i}]/price", "price or qty is missing"))
        elif price * qty != total:
            add(Failure(codes.ORDER_LINES, f"OrderList[{i}]/totalPrice",
                        f"totalPrice {_money(total)} but price x qty = {_money(price)} x {_money(qty)}"
                        f" = {_money(price * qty)}"))
    goods = _amount(order, "goodsValue")
    if goods != line_sum:
        add(Failure(codes.ORDER_LINES, "OrderHead/goodsValue",
                    f"goodsValue {_money(goods)} but the lines' totalPrice sum to {_money(line_sum)}"))


def _payment_amount(order, payment, add) -> None:
    amount = _amount(payment, "amountPaid")
    paid = _amount(order, "acturalPaid")
    if amount is None or amount != paid:
        add(Failure(codes.PAYMENT_AMOUNT, "PaymentHead/amountPaid",
                    f"amountPaid {_money(amount)} but the order's acturalPaid is {_money(paid)}"))


def _payer_identity(order, payment, add) -> None:
    for payer_key, buyer_key in (("payerName", "buyerName"), ("payerIdNumber", "buyerIdNumber")):
        if _differs(payment, payer_key, order, buyer_key):
            add(Failure(codes.PAYER_IDENTITY, f"PaymentHead/{payer_key}",
                        f"{payer_key} differs from the order's {buyer_key}"))
    # Both must be an ID card, so requiring "1" on each also makes them equal.
    if _text(payment, "payerIdType") != ID_CARD:
        add(Failure(codes.PAYER_IDENTITY, "PaymentHead/payerIdType",
                    f"payerIdType {_text(payment, 'payerIdType')!r}, must be {ID_CARD} (ID card)"))
    if _text(order, "buyerIdType") != ID_CARD:
        add(Failure(codes.PAYER_IDENTITY, "OrderHead/buyerIdType",
                    f"buyerIdType {_text(order, 'buyerIdType')!r}, must be {ID_CARD} (ID card)"))


def _payment_reference(order, payment, add) -> None:
    if _differs(payment, "ebpCode", order, "ebpCode"):
        add(Failure(codes.PAYMENT_REFERENCE, "PaymentHead/ebpCode",
                    f"ebpCode {_text(payment, 'ebpCode')!r} but the order's is {_text(order, 'ebpCode')!r}"))
    for key in ("payCode", "payTransactionId"):
        named = _text(order, key)
        if named and named != _text(payment, key):
            add(Failure(codes.PAYMENT_REFERENCE, f"PaymentHead/{key}",
                        f"{key} {_text(payment, key)!r} but the order names {named!r}"))


def _consignee(order, logistics, add) -> None:
    for key in ("consignee", "consigneeTelephone", "consigneeAddress"):
        if _differs(logistics, key, order, key):
            add(Failure(codes.CONSIGNEE, f"LogisticsHead/{key}", f"{key} differs from the order's"))


def _inventory_parties(order, logistics, inventory, add) -> None:
    for key, other, name in (("ebpCode", order, "order"), ("ebcCode", order, "order"),
                             ("logisticsCode", logistics, "waybill"), ("logisticsNo", logistics, "waybill")):
        if _differs(inventory, key, other, key):
            add(Failure(codes.INVENTORY_PARTIES, f"InventoryHead/{key}",
                        f"{key} {_text(inventory, key)!r} but the {name}'s is {_text(other, key)!r}"))


def _inventory_buyer(order, inventory, add) -> None:
    for key in ("buyerName", "buyerIdType", "buyerIdNumber", "buyerTelephone"):
        if _differs(inventory, key, order, key):
            add(Failure(codes.INVENTORY_BUYER, f"InventoryHead/{key}", f"{key} differs from the order's"))


def _inventory_lines(order_lines, inventory_lines, add) -> None:
    count = len(inventory_lines)
    if count != len(order_lines):
        add(Failure(codes.INVENTORY_LINES, "InventoryList",
                    f"{count} inventory lines but the order has {len(order_lines)}"))
    gnums = [_int(line.get("gnum")) for line in inventory_lines]
    if sorted(gnums) != list(range(1, count + 1)):
        shown = ",".join("?" if g < 0 else str(g) for g in gnums)
        add(Failure(codes.INVENTORY_LINES, "InventoryList/gnum",
                    f"gnum values {shown} do not run 1..{count} without gap"))
    by_gnum = {_int(line.get("gnum")): line for line in order_lines}
    for i, (gnum, line) in enumerate(zip(gnums, inventory_lines), 1):
        ordered = by_gnum.get(gnum)
        if ordered is None:
            add(Failure(codes.INVENTORY_LINES, f"InventoryList[{i}]/gnum",
                        f"no order line with gnum {gnum if gnum >= 0 else '?'}"))
            continue
        if _differs(line, "gname", ordered, "itemName"):
            add(Failure(codes.INVENTORY_LINES, f"InventoryList[{i}]/gname",
                        f"gname differs from the order line's itemName (gnum {gnum})"))
        for key in ("qty", "totalPrice"):
            mine, theirs = _amount(line, key), _amount(ordered, key)
            if mine is None or mine != theirs:
                add(Failure(codes.INVENTORY_LINES, f"InventoryList[{i}]/{key}",
                            f"{key} {_money(mine)} but the order line (gnum {gnum}) has {_money(theirs)}"))


def _fixed_values(order, order_lines, payment, logistics, inventory, inventory_lines, add) -> None:
    def currency(doc, where):
        if "currency" in doc and _text(doc, "currency") != CNY:
            add(Failure(codes.FIXED_VALUES, f"{where}/currency",
                        f"currency {_text(doc, 'currency')!r}, must be {CNY} (CNY)"))

    currency(order, "OrderHead")
    for i, line in enumerate(order_lines, 1):
        currency(line, f"OrderList[{i}]")
    currency(payment, "PaymentHead")
    currency(logistics, "LogisticsHead")
    currency(inventory, "InventoryHead")
    for i, line in enumerate(inventory_lines, 1):
        currency(line, f"InventoryList[{i}]")
    if _text(order, "orderType") != "I":
        add(Failure(codes.FIXED_VALUES, "OrderHead/orderType", f"orderType {_text(order, 'orderType')!r}, must be I"))
    if _text(inventory, "ieFlag") != "I":
        add(Failure(codes.FIXED_VALUES, "InventoryHead/ieFlag", f"ieFlag {_text(inventory, 'ieFlag')!r}, must be I"))
    for doc, where in ((inventory, "InventoryHead"), (logistics, "LogisticsHead")):
        if _int(doc.get("packNo")) != 1:
            add(Failure(codes.FIXED_VALUES, f"{where}/packNo", f"packNo {_text(doc, 'packNo')!r}, must be 1"))
    trade_mode = _text(inventory, "tradeMode")
    if trade_mode not in (DIRECT, BONDED):
        add(Failure(codes.FIXED_VALUES, "InventoryHead/tradeMode",
                    f"tradeMode {trade_mode!r}, must be {DIRECT} (direct) or {BONDED} (bonded)"))
    elif trade_mode == BONDED:
        for key in ("emsNo", "areaCode"):
            if not _text(inventory, key):
                add(Failure(codes.FIXED_VALUES, f"InventoryHead/{key}", f"bonded import ({BONDED}) needs {key}"))
        for i, line in enumerate(inventory_lines, 1):
            if not _text(line, "itemRecordNo"):
                add(Failure(codes.FIXED_VALUES, f"InventoryList[{i}]/itemRecordNo",
                            f"bonded import ({BONDED}) needs itemRecordNo on every line"))


def _assure_code(inventory, add) -> None:
    assure = _text(inventory, "assureCode")
    if not assure or assure not in (_text(inventory, "ebpCode"), _text(inventory, "ebcCode"),
                                    _text(inventory, "logisticsCode"), _text(inventory, "agentCode")):
        add(Failure(codes.ASSURE_CODE, "InventoryHead/assureCode",
                    f"assureCode {assure!r} is none of the inventory's ebpCode, ebcCode, logisticsCode, agentCode"))


def _tax_total(order, tax: TaxResult, tolerance: Decimal, add) -> None:
    declared = _amount(order, "taxTotal") or ZERO
    difference = abs(declared - tax.total)
    if difference > tolerance:
        add(Failure(codes.TAX_TOTAL, "OrderHead/taxTotal",
                    f"taxTotal {_money(declared)} but the computed tax is {_money(tax.total)}"
                    f" (difference {_money(difference)} above the tolerance {_money(tolerance)})"))


def _limits(value: Decimal, year_to_date: Decimal | None, settings: RuleSettings, add) -> None:
    if value > settings.single_limit:
        add(Failure(codes.SINGLE_LIMIT, "taxableValue",
                    f"taxable value {_money(value)} exceeds the single-transaction limit"
                    f" {_money(settings.single_limit)} (customs -621005)"))
    if year_to_date is not None and year_to_date + value > settings.annual_limit:
        add(Failure(codes.ANNUAL_LIMIT, "taxableValue",
                    f"year-to-date {_money(year_to_date)} + taxable value {_money(value)}"
                    f" = {_money(year_to_date + value)} exceeds the annual limit"
                    f" {_money(settings.annual_limit)} (customs -621018)"))


# --- reading documents -----------------------------------------------------------------

def _key(*documents) -> tuple[str, str]:
    ebp_code = order_no = ""
    for doc in documents:
        if doc is None:
            continue
        ebp_code = ebp_code or _text(doc, "ebpCode")
        order_no = order_no or _text(doc, "orderNo")
    return ebp_code, order_no


def _text(doc: Mapping, key: str) -> str:
    value = doc.get(key)
    if type(value) is str:  # nearly always: the exact type test is cheaper than the checks below
        return value.strip()
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()


def _differs(doc: Mapping, key: str, other: Mapping, other_key: str) -> bool:
    return _text(doc, key) != _text(other, other_key)


def _amount(doc: Mapping, key: str) -> Decimal | None:
    """The amount under ``key``; None when absent or not a number (so it never equals one)."""
    value = doc.get(key)
    if not isinstance(value, Decimal):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            return None
        try:
            value = Decimal(value)
        except InvalidOperation:
            return None
    return value if value.is_finite() else None


def _int(value) -> int:
    """A gnum/packNo as int; -1 for anything that is not a whole number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return -1


def _money(value: Decimal | None) -> str:
    return "missing" if value is None else plain(value)
