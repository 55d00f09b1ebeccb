"""The catalogue of CEB messages sandan reads and writes, and the shape of a document.

A *document* is a plain dict: the standard's element names as keys (``orderNo``,
``acturalPaid`` ...), strings for text, ``int`` for ``gnum``/``packNo``, ``Decimal`` for
amounts, the body lines as a list of dicts under ``"lines"`` (messages with a body), and
``"message"`` naming the CEB message it came in (``"CEB311"``). Absent optional fields are
absent keys. The same shape is what the Avro codec encodes and what ``sandan ceb parse``
prints (with amounts as decimal strings).
"""
from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "http://www.chinaport.gov.cn/ceb"
MAX_DOCUMENTS_PER_MESSAGE = 100


@dataclass(frozen=True)
class MessageType:
    code: str            # "CEB311"
    kind: str            # sandan's name for the document kind: "order", "receipt" ...
    head: str            # entity of the document's head fields, e.g. "OrderHead"
    wrapper: str | None  # element wrapping head + lines ("Order"), None when the head is the item
    body: str | None     # entity of the body lines ("OrderList"), None when there are none
    signed: bool = False  # the standard requires ds:Signature
    transfer: bool = True  # carries ceb:BaseTransfer (data messages do, receipts do not)
    max_items: int | None = MAX_DOCUMENTS_PER_MESSAGE

    @property
    def root(self) -> str:
        return f"{self.code}Message"


_TYPES = [
    MessageType("CEB311", "order", "OrderHead", "Order", "OrderList"),
    MessageType("CEB411", "payment", "PaymentHead", "Payment", None),
    MessageType("CEB511", "logistics", "LogisticsHead", "Logistics", None),
    MessageType("CEB513", "logistics_status", "LogisticsStatus", None, None),
    MessageType("CEB621", "inventory", "InventoryHead", "Inventory", "InventoryList", signed=True),
    MessageType("CEB623", "cancel", "InvtCancel", None, None, signed=True),
    MessageType("CEB625", "refund", "InvtRefundHead", "InvtRefund", "InvtRefundList", signed=True),
    MessageType("CEB711", "delivery", "DeliveryHead", "Delivery", "DeliveryList", signed=True, max_items=1),
    MessageType("CEB312", "receipt", "OrderReturn", None, None, transfer=False),
    MessageType("CEB412", "receipt", "PaymentReturn", None, None, transfer=False),
    MessageType("CEB512", "receipt", "LogisticsReturn", None, None, transfer=False),
    MessageType("CEB514", "receipt", "LogisticsStatusReturn", None, None, transfer=False),
    MessageType("CEB622", "receipt", "InventoryReturn", None, None, transfer=False),
    MessageType("CEB624", "receipt", "InvtCancelReturn", None, None, transfer=False),
    MessageType("CEB626", "receipt", "InvtRefundReturn", None, None, transfer=False),
    MessageType("CEB712", "receipt", "DeliveryReturn", None, None, transfer=False),
    MessageType("CEB816", "tax", "TaxHeadRd", "Tax", "TaxListRd", transfer=False, max_items=None),
    MessageType("CEB818", "tax_status", "TaxHeadStatus", "Tax", None, transfer=False, max_items=None),
    MessageType("CEB900", "format_check", "MessageReturn", None, None, transfer=False, max_items=1),
]

MESSAGE_TYPES: dict[str, MessageType] = {t.code: t for t in _TYPES}
BY_ROOT: dict[str, MessageType] = {t.root: t for t in _TYPES}

# The four documents of one declaration, in the order verdicts name them.
DECLARATION_KINDS = ("order", "payment", "logistics", "inventory")
MESSAGE_OF_KIND = {"order": "CEB311", "payment": "CEB411", "logistics": "CEB511", "inventory": "CEB621",
                   "cancel": "CEB623", "refund": "CEB625", "delivery": "CEB711",
                   "logistics_status": "CEB513"}
# Receipt message answering each data message (DOMAIN §1).
RECEIPT_FOR = {"CEB311": "CEB312", "CEB411": "CEB412", "CEB511": "CEB512", "CEB513": "CEB514",
               "CEB621": "CEB622", "CEB623": "CEB624", "CEB625": "CEB626", "CEB711": "CEB712"}


def kind_of(doc: dict) -> str:
    return MESSAGE_TYPES[doc["message"]].kind


def document_id(doc: dict) -> str:
    """Human-readable identity used in errors and logs: guid and the business key."""
    parts = [doc.get("guid") or "?"]
    for key in ("orderNo", "invtNo", "logisticsNo", "taxNo"):
        if doc.get(key):
            parts.append(f"{key}={doc[key]}")
            break
    return " ".join(parts)
