"""Deciding one complete declaration: the pure rules plus the two cross-partition facts.

The annual quota and the waybill registry live outside the partition (``quota``,
``waybills``). The quota is *reserved* only for a declaration that passes every other
rule, atomically and idempotently per declaration id, so a redelivered declaration never
counts twice and two partitions cannot both spend a buyer's last yuan.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from services.common import pii
from services.order_match import codes
from services.order_match.quota import QuotaStore
from services.order_match.rates import RateTable
from services.order_match.rules import RuleSettings, buyer_id, evaluate
from services.order_match.verdict import REJECTED, Failure, Verdict
from services.order_match.waybills import WaybillRegistry


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    buyer_key: str | None
    quota_year: int | None


def declaration_id(ebp_code: str, order_no: str) -> str:
    return f"{ebp_code}:{order_no}"


def quota_year(inventory: dict) -> int:
    """DOMAIN §3 decision: the calendar year (China time) of the inventory's appTime."""
    return int((inventory.get("appTime") or "0000")[:4])


async def decide(order: dict, payment: dict, logistics: dict, inventory: dict, *, quota: QuotaStore,
                 waybills: WaybillRegistry, settings: RuleSettings, rates: RateTable) -> Decision:
    verdict = evaluate(order, payment, logistics, inventory, year_to_date=None, settings=settings, rates=rates)
    holder = await waybills.claim((logistics.get("logisticsCode") or "").strip(),
                                  (logistics.get("logisticsNo") or "").strip(), verdict.order_no)
    buyer = pii.buyer_key(*buyer_id(order))
    year = quota_year(inventory)
    decl_id = declaration_id(verdict.ebp_code, verdict.order_no)
    if holder is None and verdict.verified:
        ok, total = await quota.reserve(decl_id, buyer, year, verdict.taxable_value, settings.annual_limit)
        if not ok:
            verdict = evaluate(order, payment, logistics, inventory, year_to_date=total, settings=settings, rates=rates)
        return Decision(verdict, buyer, year)
    # Rejected anyway: still report the annual limit if it would fail too (every failing rule).
    ytd = await quota.year_to_date(buyer, year)
    verdict = evaluate(order, payment, logistics, inventory, year_to_date=ytd, settings=settings, rates=rates)
    if holder is not None:
        reused = Failure(codes.WAYBILL_REUSED, "LogisticsHead/logisticsNo",
                         f"waybill {logistics.get('logisticsCode')}/{logistics.get('logisticsNo')} already names"
                         f" order {holder} (one number per order within 6 months)")
        verdict = dataclasses.replace(verdict, status=REJECTED, failures=verdict.failures + (reused,))
    return Decision(verdict, buyer, year)
