"""Accounts, bills, commands and verdicts for the tax_guarantee unit tests."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.common.money import ZERO
from services.tax_guarantee.account import ACTIVE, Account, Bill
from services.tax_guarantee.commands import Command

CODE = "91330106MA2H3D7P5N"
TODAY = date(2025, 6, 15)
NOW_MS = 1749960000000  # 2025-06-15 12:00 China time


def account(guaranteed="1000", outstanding="0", state=ACTIVE, valid_from=date(2025, 1, 1),
            valid_to=date(2025, 12, 31), seq=1, code=CODE) -> Account:
    return Account(code, "bank_guarantee", Decimal(guaranteed), Decimal(outstanding), state, valid_from, valid_to,
                   seq)


def bill(decl="EBP:1", deducted="100", voided="0", settled_by="") -> Bill:
    return Bill(decl, Decimal(deducted), Decimal(voided), settled_by)


def command(action, **fields) -> Command:
    fields.setdefault("assure_code", CODE)
    if "amount" in fields and fields["amount"] is not None:
        fields["amount"] = Decimal(fields["amount"])
    return Command(command_id=fields.pop("command_id", f"cmd-{action}"), action=action, actor="test", at=NOW_MS,
                   **fields)


def command_record(verb, **fields) -> dict:
    """A sandan.GuaranteeCommand record as it comes off the wire (``fields`` may override the action)."""
    record = {"commandId": f"cmd-{verb}", "action": verb, "assureCode": CODE, "kind": None, "amount": None,
              "validFrom": None, "validTo": None, "declarationId": None, "bills": [], "entDutyNo": None,
              "reason": None, "actor": "test", "at": NOW_MS}
    record.update(fields)
    if isinstance(record["amount"], str):
        record["amount"] = Decimal(record["amount"])
    return record


def verdict(decl_no="1", tax="30", code=CODE, status="verified") -> dict:
    """A sandan.Verdict as order_match publishes it on declarations.matched."""
    inventory = {"message": "CEB621", "guid": f"GUID-{decl_no}", "orderNo": f"O{decl_no}", "ebpCode": "EBP",
                 "ebcCode": "EBC", "agentCode": "AGENT01", "logisticsCode": "LOG", "logisticsNo": f"L{decl_no}",
                 "copNo": f"C{decl_no}", "assureCode": code}
    return {"declarationId": f"EBP:O{decl_no}", "ebpCode": "EBP", "orderNo": f"O{decl_no}", "status": status,
            "failures": [], "missing": [], "customsTax": ZERO, "consumptionTax": ZERO, "valueAddedTax": Decimal(tax),
            "taxTotal": Decimal(tax), "taxableValue": Decimal(tax) * 10, "assureCode": code, "buyerKey": "b" * 32,
            "quotaYear": 2025, "inventory": inventory, "lastDocumentAt": NOW_MS, "decidedAt": NOW_MS}
