"""``sandan check``: the stream's engine run over a set of documents, without Kafka or Redis.

The answer must not depend on the order files are named in, so documents are applied in
``appTime`` order (then kind and guid), and complete declarations are decided in inventory
``appTime`` order, which is also the order the annual quota is spent in. Quotas start at
zero or at the given year-to-date figures. Offline there is no clock: a declaration still
missing documents at the end is INCOMPLETE, and as every declaration is decided only once
all input is read, LOCKED (a change after verification) cannot arise here.
"""
from __future__ import annotations

import asyncio
import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path

from services.common import pii
from services.common.documents import DECLARATION_KINDS, kind_of
from services.common.money import fen_str
from services.order_match import matcher
from services.order_match.processor import MatchProcessor, Settling
from services.order_match.quota import MemoryQuotaStore
from services.order_match.rates import RateTable, load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

_KIND_RANK = {kind: i for i, kind in enumerate(DECLARATION_KINDS)}


class YearToDateError(ValueError):
    pass


def load_year_to_date(path: str | Path) -> dict[tuple[str, int], Decimal]:
    """CSV with columns buyerIdType,buyerIdNumber,year,amount → quota store seed (keyed hashes)."""
    seed: dict[tuple[str, int], Decimal] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        need = {"buyerIdType", "buyerIdNumber", "year", "amount"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise YearToDateError(f"{path}: the header must name {', '.join(sorted(need))}")
        for n, row in enumerate(reader, start=2):
            try:
                key = (pii.buyer_key(row["buyerIdType"], row["buyerIdNumber"]), int(row["year"]))
                seed[key] = seed.get(key, Decimal(0)) + Decimal(row["amount"].strip())
            except (ValueError, InvalidOperation):
                raise YearToDateError(f"{path}: line {n}: year must be a whole number and amount a decimal") from None
    return seed


def _doc_order(doc: dict) -> tuple:
    return (doc.get("appTime") or "", _KIND_RANK.get(kind_of(doc), 9), doc.get("guid") or "", matcher.fingerprint(doc))


def verdict_line(record: dict) -> dict:
    """A ``declarations.verdicts`` record as the JSON object ``sandan check`` prints."""
    decided = record["status"] != "incomplete"
    return {
        "ebpCode": record["ebpCode"], "orderNo": record["orderNo"], "status": record["status"],
        "failures": [dict(f) for f in record["failures"]], "missing": list(record["missing"]),
        "tax": {"customs": fen_str(record["customsTax"]), "consumption": fen_str(record["consumptionTax"]),
                "vat": fen_str(record["valueAddedTax"]), "total": fen_str(record["taxTotal"])} if decided else None,
        "taxableValue": fen_str(record["taxableValue"]) if decided else None,
    }


OFFLINE_NO_TIMEOUT = 2**62  # all documents are at hand: nothing expires until the end, where all open ones do


async def check_documents(documents: list[dict], *, year_to_date: dict | None = None,
                          settings: RuleSettings | None = None, rates: RateTable | None = None) -> list[dict]:
    processor = MatchProcessor(quota=MemoryQuotaStore(year_to_date), waybills=MemoryWaybillRegistry(),
                               settings=settings or RuleSettings.from_env(), rates=rates or load_rates(),
                               timeout_ms=OFFLINE_NO_TIMEOUT)
    buckets: dict[str, dict] = {}
    now = 0
    for doc in sorted(documents, key=_doc_order):
        key = (doc.get("orderNo") or "").strip()
        bucket = buckets.setdefault(key, matcher.new_bucket(key))
        processor.take(bucket, doc, now)
    ready = [(matcher.document(decl["inventory"]).get("appTime") or "", decl["ebpCode"], key)
             for key, bucket in buckets.items() for decl in bucket["declarations"]
             if decl["status"] == matcher.OPEN and matcher.complete(decl)]
    settled = await processor.settle_many([Settling(buckets[key], ebp_code) for _, ebp_code, key in sorted(ready)], now)
    records = [o.record for o in settled if o.topic == "declarations.verdicts"]
    for bucket in buckets.values():
        records += [o.record for o in processor.expire(bucket, now, all_open=True) if o.topic == "declarations.verdicts"]
    lines = [verdict_line(r) for r in records]
    lines.sort(key=lambda line: (line["ebpCode"], line["orderNo"]))
    return lines


def check(documents: list[dict], **options) -> list[dict]:
    return asyncio.run(check_documents(documents, **options))
