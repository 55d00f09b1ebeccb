"""Deciding one complete declaration: the pure rules plus the two cross-partition facts.

The annual quota and the waybill registry live outside the partition (``quota``,
``waybills``). The quota is *reserved* only for a declaration that passes every other
rule, atomically and idempotently per declaration id, so a redelivered declaration never
counts twice and two partitions cannot both spend a buyer's last yuan. A quota is the
order's buyer ID number (``pii.buyer_key``, whatever the ID type) and the year its inventory
reached sandan (``quota_year``).

``decide_many`` decides a batch with one round trip to each store: all waybill claims, then
all quota steps, each list in the batch's order. Per declaration the steps are the same
(rules, claim, then reserve or look up), and steps on the same buyer or waybill apply in
the batch's order, so the decisions are those of deciding one declaration after the other.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date

from services.common import clock, pii
from services.common import codes
from services.common.quota.store import Lookup, QuotaStore, Reservation
from services.common.rates import RateTable
from services.order_match.rules import RuleSettings, buyer_id, evaluate
from services.common.verdict import REJECTED, Failure, Verdict
from services.order_match.waybills import Claim, WaybillRegistry


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    buyer_key: str | None
    quota_year: int | None


def declaration_id(ebp_code: str, order_no: str) -> str:
    return f"{ebp_code}:{order_no}"


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000
_CHINA_OFFSET_MS = 8 * 3_600_000  # China time is UTC+8 all year


def quota_year(inventory: Mapping, arrived_ms: int | None = None) -> int:
    """DOMAIN §3 decision: the calendar year, China time, in which the inventory reached sandan
    (``arrived_ms``: the broker's append time of its record), so the sender's clock never
    chooses it. Offline there is no arrival: the year of its ``appTime``, or of the machine's
    clock when that holds no date (the reader refuses such a document; one that slipped
    through must still not stop the engine)."""
    if arrived_ms is None:
        year = _app_time_year(inventory.get("appTime"))
        if year is not None:
            return year
        arrived_ms = clock.now_ms()
    return china_year(arrived_ms)


def china_year(ms: int) -> int:
    """The China-time calendar year of an epoch-milliseconds instant (clamped to 1..9999)."""
    try:
        return date.fromordinal(_EPOCH_ORDINAL + (int(ms) + _CHINA_OFFSET_MS) // _DAY_MS).year
    except (ValueError, OverflowError):
        return MINYEAR if ms < 0 else MAXYEAR


def _app_time_year(app_time) -> int | None:
    if not isinstance(app_time, str):
        return None
    text = app_time.strip()
    if not (len(text) == 14 and text.isascii() and text.isdigit()):
        return None
    try:
        return clock.parse_app_time(text).year
    except ValueError:
        return None


Documents = tuple[dict, dict, dict, dict]  # order, payment, waybill, inventory


async def decide(order: dict, payment: dict, logistics: dict, inventory: dict, *, quota: QuotaStore,
                 waybills: WaybillRegistry, settings: RuleSettings, rates: RateTable,
                 arrived_ms: int | None = None) -> Decision:
    [decision] = await decide_many([(order, payment, logistics, inventory)], quota=quota, waybills=waybills,
                                   settings=settings, rates=rates, arrivals=[arrived_ms])
    return decision


async def decide_many(batch: Sequence[Documents], *, quota: QuotaStore, waybills: WaybillRegistry,
                      settings: RuleSettings, rates: RateTable,
                      arrivals: Sequence[int | None] | None = None, claimed: Sequence[Claim] = ()) -> list[Decision]:
    """``arrivals``: per declaration, when its inventory reached Kafka (None offline), which
    chooses the quota year (``quota_year``). ``claimed``: the waybill claims of inventories
    taken before these decisions, made first in the same round trip (whoever named a number
    first holds it, decided or not)."""
    if not batch:
        if claimed:
            await waybills.claim_many(claimed)
        return []
    if arrivals is None:
        arrivals = [None] * len(batch)
    verdicts = [evaluate(*docs, year_to_date=None, settings=settings, rates=rates) for docs in batch]
    holders = (await waybills.claim_many([*claimed, *(((docs[2].get("logisticsCode") or "").strip(),
                                                       (docs[2].get("logisticsNo") or "").strip(), verdict.order_no,
                                                       docs[3].get("appTime") or "", arrived)
                                                      for docs, verdict, arrived
                                                      in zip(batch, verdicts, arrivals))]))[len(claimed):]
    steps = []
    for docs, verdict, holder, arrived in zip(batch, verdicts, holders, arrivals):
        buyer = pii.buyer_key(buyer_id(docs[0])[1])
        year = quota_year(docs[3], arrived)
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
