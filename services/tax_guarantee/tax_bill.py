"""The electronic tax bill of a cleared declaration (CEB816) and its status changes (CEB818), as
``sandan.Receipt`` records (no I/O).

A bill is addressed to the collecting enterprise (the inventory's ``assureCode``): its
guarantee was debited and it receives customs' aggregated payment notice. No copy goes to the
platform, which learns the outcome from its own receipts.

Per-line taxes add up to the head exactly: each line's exact tax (its pro-rata share of the
taxable value P at the line's rates, as integers over one common denominator) is rounded down
to the fen, and the fen the head has left over go to the lines with the largest remainders
(ties to the lower ``gnum``; largest remainder method), so every line is within a fen of its
exact tax. ``taxPrice`` is
each line's exact share of P apportioned the same way.

Every value comes from the verdict and the ledger entry of the deduction (or of the void or
settlement), so a replay builds the same bill: ``taxNo`` is the ``invtNo`` followed by ``01``
(a declaration has one bill), guids are name-based UUIDs of the declaration.
"""
from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from services.common.clock import china_stamp
from services.common.money import FEN, SCALE, UNIT, fen_str, round_fen, to_units
from services.common.rates import RateTable

TAX_BILL, TAX_STATUS = "CEB816", "CEB818"
GENERATED, AGGREGATED, VOID = "1", "2", "3"
_REDUCTION = Fraction(7, 10)  # 70% of the statutory VAT and consumption tax within the limits (DOMAIN §3)
_STATUS_TEXT = {GENERATED: "generated", AGGREGATED: "aggregated", VOID: "void"}


def tax_no(invt_no: str) -> str:
    return f"{invt_no}01"


def invt_no_of(verdict: dict) -> str | None:
    inventory = verdict.get("inventory") or {}
    return (verdict.get("invtNo") or inventory.get("invtNo") or "").strip() or None


def apportion(total: Decimal, exact: Sequence[int], denominator: int) -> list[Decimal]:
    """``total`` split over the exact line amounts ``exact[i] / denominator`` CNY, in whole fen
    (whole 0.00001 when ``total`` is not a whole fen), adding up to ``total``.

    When ``total`` is the rounded sum of the exact amounts each part is its exact amount rounded
    down or up (the largest remainders go up, ties to the first line); otherwise (a head computed
    with other rates) ``total`` is split in proportion to them, or evenly when they are all 0.
    Integers throughout: the exact amounts share one denominator.
    """
    if not exact:
        return []
    unit, per_cny = (FEN, 100) if total == round_fen(total) else (UNIT, 10**SCALE)
    units = int(total.scaleb(2 if unit == FEN else SCALE))
    wanted, whole = [a * per_cny for a in exact], denominator  # line i wants wanted[i] / whole units
    parts = [a // whole for a in wanted]
    if not 0 <= units - sum(parts) <= len(parts):
        weights = wanted if any(wanted) else [1] * len(wanted)
        wanted, whole = [units * a for a in weights], sum(weights)
        parts = [a // whole for a in wanted]
    left = units - sum(parts)
    for i in sorted(range(len(wanted)), key=lambda i: (-(wanted[i] % whole), i))[:left]:
        parts[i] += 1
    return [Decimal(p) * unit for p in parts]


def line_taxes(verdict: dict, rates: RateTable) -> list[dict]:
    """``sandan.TaxLine`` records of the verdict's inventory lines (see the module's doc)."""
    lines = sorted((verdict.get("inventory") or {}).get("lines") or [], key=lambda line: line["gnum"])
    if not lines:
        return []
    weights = [to_units(line["totalPrice"]) for line in lines]
    if sum(weights) == 0:  # every line free (gifts): P splits evenly, as the match's tax does
        weights = [1] * len(lines)
    # line l's share of P is taxable * weights[l] / sum(weights); its taxes that share times a
    # factor of its rates. Over one common denominator every exact amount is an integer.
    taxable = to_units(verdict["taxableValue"])
    excise, vat = zip(*(_factors(rates.lookup(line.get("gcode") or "")) for line in lines))
    common = math.lcm(*(f.denominator for f in excise + vat))
    denominator = 10**SCALE * sum(weights) * common
    base = [taxable * w for w in weights]
    shares = [b * common for b in base]
    columns = {"taxPrice": apportion(verdict["taxableValue"], shares, denominator),
               "customsTax": apportion(verdict["customsTax"], shares, denominator),
               "valueAddedTax": apportion(verdict["valueAddedTax"], _times(base, vat, common), denominator),
               "consumptionTax": apportion(verdict["consumptionTax"], _times(base, excise, common), denominator)}
    return [{"gnum": line["gnum"], "gcode": line["gcode"], **{name: column[i] for name, column in columns.items()}}
            for i, line in enumerate(lines)]


@functools.lru_cache(maxsize=256)
def _factors(rates: tuple[Decimal, Decimal]) -> tuple[Fraction, Fraction]:
    """(consumption tax, VAT) per CNY of a line's share of P: c/(1−c)·0.7 and v/(1−c)·0.7."""
    v, c = (Fraction(r) for r in rates)
    return c / (1 - c) * _REDUCTION, v / (1 - c) * _REDUCTION


def _times(base: list[int], factors: tuple[Fraction, ...], common: int) -> list[int]:
    """Numerators over the common denominator of each line's share times its factor."""
    return [b * f.numerator * (common // f.denominator) for b, f in zip(base, factors)]


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
