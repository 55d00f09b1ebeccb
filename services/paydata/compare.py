"""The payment data a platform uploaded against what was declared (pure).

The declaration's side comes from its CEB311 order and CEB411 payment (``Facts``, kept by the
service as the documents pass); the upload's from ``payExchangeInfoHead`` and the list entry
of the declared order. Every differing field is reported, by name, never with its values.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ORDER_NO, PAY_TRANSACTION_ID, PAY_CODE, TOTAL_AMOUNT, GOODS = (
    "orderNo", "payTransactionId", "payCode", "totalAmount", "gname")


@dataclass(frozen=True)
class Mismatch:
    field: str
    message: str


@dataclass(frozen=True)
class Facts:
    """What the declaration says about its payment: the CEB411's values (the order's where no
    payment is known), the order's goods names in line order."""
    ebp_code: str
    order_no: str
    pay_code: str | None
    pay_transaction_id: str | None
    amount: Decimal | None
    goods: tuple[str, ...]

    @property
    def declaration_id(self) -> str:
        return f"{self.ebp_code}:{self.order_no}"


def facts_of(order: dict | None, payment: dict | None) -> Facts | None:
    """The facts of a declaration from its decoded order and payment records (either may be None)."""
    if order is None and payment is None:
        return None
    first = order or payment
    order = order or {}
    payment = payment or {}

    def pick(name: str):
        value = payment.get(name)
        return value if value not in (None, "") else order.get(name) or None

    amount = payment.get("amountPaid")
    if amount is None:
        amount = order.get("acturalPaid")
    return Facts(ebp_code=_clean(first.get("ebpCode")), order_no=_clean(first.get("orderNo")),
                 pay_code=_clean(pick("payCode")) or None,
                 pay_transaction_id=_clean(pick("payTransactionId")) or None,
                 amount=Decimal(amount) if amount is not None else None,
                 goods=tuple(_clean(line.get("itemName")) for line in order.get("lines") or ()))


def compare(facts: Facts, head: dict, lists: list, total_amount: Decimal) -> list[Mismatch]:
    """Every field of the upload that differs from the declaration (empty: they agree)."""
    found = []
    entry = next((e for e in lists if _clean(e.get("orderNo")) == facts.order_no), None)
    if entry is None:
        found.append(Mismatch(ORDER_NO, f"no payExchangeInfoLists entry names the declared order {facts.order_no}"))
    if _clean(head.get("payTransactionId")) != (facts.pay_transaction_id or ""):
        found.append(Mismatch(PAY_TRANSACTION_ID, "payTransactionId differs from the declared payment's (CEB411)"))
    if _clean(head.get("payCode")) != (facts.pay_code or ""):
        found.append(Mismatch(PAY_CODE, "payCode differs from the declared payment's (CEB411)"))
    if facts.amount is None or total_amount != facts.amount:
        found.append(Mismatch(TOTAL_AMOUNT, f"totalAmount {total_amount} differs from the declared amount paid "
                                            f"{facts.amount if facts.amount is not None else '(none)'}"))
    if entry is not None:
        uploaded = sorted(_clean(g.get("gname")) for g in entry.get("goodsInfo") or ())
        if uploaded != sorted(facts.goods):
            found.append(Mismatch(GOODS, f"goods names differ from the declared order's lines (CEB311 itemName): "
                                         f"{len(uploaded)} uploaded, {len(facts.goods)} declared"))
    return found


def _clean(value) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))
