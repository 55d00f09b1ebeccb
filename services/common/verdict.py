"""The outcome of matching one declaration, and its JSON line (``sandan check``).

A failure names the rule code, the field (``"OrderHead/acturalPaid"``,
``"InventoryList[2]/qty"``: entity, 1-based position of the line in its document, element)
and a message. Messages quote amounts and enterprise codes but never personal data: for a
name, ID number, phone or address they say which field differs, not what it holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.common.money import amount_str, fen_str
from services.common.tax import TaxResult

VERIFIED = "verified"
REJECTED = "rejected"
INCOMPLETE = "incomplete"
STATUSES = (VERIFIED, REJECTED, INCOMPLETE)


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    field: str
    message: str

    def to_json_dict(self) -> dict:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    failures: tuple[Failure, ...]
    missing: tuple[str, ...]
    tax: TaxResult | None
    taxable_value: Decimal | None
    ebp_code: str = ""
    order_no: str = ""

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(f.code for f in self.failures)

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED

    def to_json_dict(self) -> dict:
        tax = self.tax
        return {
            "ebpCode": self.ebp_code,
            "orderNo": self.order_no,
            "status": self.status,
            "failures": [f.to_json_dict() for f in self.failures],
            "missing": list(self.missing),
            "tax": None if tax is None else {
                "customs": fen_str(tax.customs),
                "consumption": fen_str(tax.consumption),
                "vat": fen_str(tax.vat),
                "total": fen_str(tax.total),
            },
            "taxableValue": None if self.taxable_value is None else amount_str(self.taxable_value),
        }
