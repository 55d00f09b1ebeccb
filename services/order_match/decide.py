"""Deciding one complete declaration: the pure rules plus the two cross-partition facts.

The annual quota and the waybill registry live outside the partition (``quota``,
``waybills``). The quota is *reserved* only for a declaration that passes every other
rule, atomically and idempotently per declaration id, so a redelivered declaration never
counts twice and two partitions cannot both spend a buyer's last yuan.

``decide_many`` decides a batch with one round trip to each store: all waybill claims, then
all quota steps, each list in the batch's order. Per declaration the steps are the same
(rules, claim, then reserve or look up), and steps on the same buyer or waybill apply in
the batch's order, so the decisions are those of deciding one declaration after the other.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from services.common import pii
from services.order_match import codes
from services.order_match.quota import Lookup, QuotaStore, Reservation
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


Documents = tuple[dict, dict, dict, dict]  # order, payment, waybill, inventory


async def decide(order: dict, payment: dict, logistics: dict, inventory: dict, *, quota: QuotaStore,
                 waybills: WaybillRegistry, settings: RuleSettings, rates: RateTable) -> Decision:
    [decision] = await decide_many([(order, payment, logistics, inventory)], quota=quota, waybills=waybills,
                                   settings=settings, rates=rates)
    return decision


async def decide_many(batch: Sequence[Documents], *, quota: QuotaStore, waybills: WaybillRegistry,
                      settings: RuleSettings, rates: RateTable) -> list[Decision]:
    if not batch:
        return []
    verdicts = [evaluate(*docs, year_to_date=None, settings=settings, rates=rates) for docs in batch]
    holders = await waybills.claim_many([((docs[2].get("logisticsCode") or "").strip(),
                                          (docs[2].get("logisticsNo") or "").strip(), verdict.order_no,
                                          docs[3].get("appTime") or "")
                                         for docs, verdict in zip(batch, verdicts)])
    steps = []
    for docs, verdict, holder in zip(batch, verdicts, holders):
        buyer = pii.buyer_key(*buyer_id(docs[0]))
        year = quota_year(docs[3])
        if holder is None and verdict.verified:
            steps.append(Reservation(declaration_id(verdict.ebp_code, verdict.order_no), buyer, year,
                                     verdict.taxable_value, settings.annual_limit))
        else:  # rejected anyway: still report the annual limit if it would fail too (every failing rule)
            steps.append(Lookup(buyer, year))
    answers = await quota.run(steps)
    return [_decision(docs, verdict, holder, step, answer, settings, rates)
            for docs, verdict, holder, step, answer in zip(batch, verdicts, holders, steps, answers)]


def _decision(docs: Documents, verdict: Verdict, holder: str | None, step, answer, settings: RuleSettings,
              rates: RateTable) -> Decision:
    if isinstance(step, Reservation):
        ok, total = answer
        if not ok:
            verdict = evaluate(*docs, year_to_date=total, settings=settings, rates=rates)
        return Decision(verdict, step.buyer_key, step.year)
    verdict = evaluate(*docs, year_to_date=answer, settings=settings, rates=rates)
    if holder is not None:
        logistics = docs[2]
        reused = Failure(codes.WAYBILL_REUSED, "LogisticsHead/logisticsNo",
                         f"waybill {logistics.get('logisticsCode')}/{logistics.get('logisticsNo')} already names"
                         f" order {holder} (one number per order within 6 months)")
        verdict = dataclasses.replace(verdict, status=REJECTED, failures=verdict.failures + (reused,))
    return Decision(verdict, step.buyer_key, step.year)
