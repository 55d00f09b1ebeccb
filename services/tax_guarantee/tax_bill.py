"""The electronic tax bill of a cleared declaration (CEB816) and its status changes (CEB818), as
``sandan.Receipt`` records (no I/O).

A bill is addressed to the collecting enterprise (the inventory's ``assureCode``): its
guarantee was debited and it receives customs' aggregated payment notice. No copy goes to the
platform, which learns the outcome from its own receipts.

Per-line taxes add up to the head exactly (``services/common/tax_lines.py``).

Every value comes from the verdict and the ledger entry of the deduction (or of the void or
settlement), so a replay builds the same bill: ``taxNo`` is the ``invtNo`` followed by ``01``
(a declaration has one bill), guids are name-based UUIDs of the declaration.
"""
from __future__ import annotations

import uuid

from services.common.clock import china_stamp
from services.common.money import fen_str
from services.common.rates import RateTable
from services.common.tax_lines import line_taxes

TAX_BILL, TAX_STATUS = "CEB816", "CEB818"
GENERATED, AGGREGATED, VOID = "1", "2", "3"
_STATUS_TEXT = {GENERATED: "generated", AGGREGATED: "aggregated", VOID: "void"}


def tax_no(invt_no: str) -> str:
    return f"{invt_no}01"


def invt_no_of(verdict: dict) -> str | None:
    inventory = verdict.get("inventory") or {}
    return (verdict.get("invtNo") or inventory.get("invtNo") or "").strip() or None


def tax_bill(verdict: dict, at_ms: int, rates: RateTable) -> dict | None:
    """The CEB816 bill (status 1) of a deducted declaration; None without an ``invtNo`` to name it by."""
    invt_no = invt_no_of(verdict)
    inventory = verdict.get("inventory") or {}
    if invt_no is None or not inventory.get("lines"):
        return None
    assure = (verdict.get("assureCode") or inventory.get("assureCode") or "").strip()
    info = (f"tax bill generated: customs duty {fen_str(verdict['customsTax'])}, VAT"
            f" {fen_str(verdict['valueAddedTax'])}, consumption tax {fen_str(verdict['consumptionTax'])} CNY")
    return {"guid": _guid(f"sandan:tax-bill:{verdict['declarationId']}"), "message": TAX_BILL, "receiver": assure,
            "documentGuid": inventory.get("guid"), "orderNo": verdict["orderNo"], "ebpCode": verdict["ebpCode"],
            "ebcCode": inventory.get("ebcCode"), "payCode": None, "payTransactionId": None,
            "logisticsCode": inventory.get("logisticsCode"), "logisticsNo": inventory.get("logisticsNo"),
            "agentCode": inventory.get("agentCode"), "copNo": inventory.get("copNo"), "invtNo": invt_no,
            "preNo": inventory.get("preNo"), "customsCode": inventory.get("customsCode"), "taxNo": tax_no(invt_no),
            "customsTax": verdict["customsTax"], "valueAddedTax": verdict["valueAddedTax"],
            "consumptionTax": verdict["consumptionTax"], "taxStatus": GENERATED, "entDutyNo": None,
            "assureCode": assure, "taxLines": line_taxes(verdict, rates), "note": None,
            "returnStatus": GENERATED, "returnTime": china_stamp(at_ms), "returnInfo": info, "failures": []}


def status_change(bill: dict, status: str, entry: dict) -> dict:
    """The CEB818 of ``bill`` (a CEB816 record) moving to ``status`` by the ledger ``entry``
    (a void, or a settlement with its payment notice number)."""
    ent_duty_no = entry.get("entDutyNo") if status == AGGREGATED else None
    info = f"tax bill {bill['taxNo']} {_STATUS_TEXT[status]}" + (f" by payment notice {ent_duty_no}"
                                                                 if ent_duty_no else "")
    keep = ("receiver", "documentGuid", "orderNo", "ebpCode", "ebcCode", "logisticsCode", "logisticsNo", "agentCode",
            "copNo", "invtNo", "preNo", "customsCode", "taxNo", "assureCode")
    change = {name: None for name in ("payCode", "payTransactionId", "customsTax", "valueAddedTax", "consumptionTax",
                                      "note")}
    change.update({name: bill.get(name) for name in keep})
    change.update(guid=_guid(f"sandan:tax-status:{entry['entryId']}:{bill['taxNo']}"), message=TAX_STATUS,
                  taxStatus=status, entDutyNo=ent_duty_no, taxLines=[], returnStatus=status,
                  returnTime=china_stamp(entry["at"]), returnInfo=info, failures=[])
    return change


def _guid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name)).upper()
