"""``sandan check``: the stream's engine run over a set of documents, without Kafka or Redis.

The answer must not depend on the order files are named in, so documents are applied in the
order of application (DOMAIN §2a: ``appTime``, then ``appType`` 1, 2, 3; then kind and guid),
and complete declarations are decided in inventory ``appTime`` order, which is also the order
the annual quota is spent in. Quotas start at zero or at the given year-to-date figures.
The machine's clock at the run stands for every document's arrival (``APP_TIME``). A
declaration still missing documents at the end is INCOMPLETE, and as every declaration is
decided only once all input is read, LOCKED (a change after verification) cannot arise here.

Each line carries ``refused``: the documents of that declaration refused on their own
(DUPLICATE, APP_TIME, NOT_FOUND ..., and the reader's field refusals handed in by the caller).
Refusals of no declaration that has a line come on lines of their own, status ``refused``.
"""
from __future__ import annotations

import asyncio
import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path

from services.common import pii
from services.common.clock import now_ms as clock_ms
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
    return (matcher.order_key(doc), _KIND_RANK.get(kind_of(doc), 9), doc.get("guid") or "", matcher.fingerprint(doc))


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
                          settings: RuleSettings | None = None, rates: RateTable | None = None,
                          refused: list[dict] | None = None, now_ms: int | None = None) -> list[dict]:
    """One line per declaration (see the module's docstring). ``refused``: documents set aside
    before the match, each ``{"guid", "code", "message"}`` with what could be read of its
    ``ebpCode``, ``orderNo``, ``logisticsCode``, ``logisticsNo``. ``now_ms``: the arrival
    time of every document (default: the clock)."""
    processor = MatchProcessor(quota=MemoryQuotaStore(year_to_date), waybills=MemoryWaybillRegistry(),
                               settings=settings or RuleSettings.from_env(), rates=rates or load_rates(),
                               timeout_ms=OFFLINE_NO_TIMEOUT)
    buckets: dict[str, dict] = {}
    now = clock_ms() if now_ms is None else now_ms
    refusals = [dict(r) for r in refused or ()]
    for doc in sorted(documents, key=_doc_order):
        key = (doc.get("orderNo") or "").strip()
        bucket = buckets.setdefault(key, matcher.new_bucket(key))
        taken, _ = processor.take(bucket, doc, now)
        refusals += [_refusal_of(o.record, doc) for o in taken if o.topic == "receipts"]
    ready = [(matcher.document(decl["inventory"]).get("appTime") or "", decl["ebpCode"], key)
             for key, bucket in buckets.items() for decl in bucket["declarations"]
             if decl["status"] == matcher.OPEN and matcher.complete(decl)]
    settled = await processor.settle_many([Settling(buckets[key], ebp_code) for _, ebp_code, key in sorted(ready)], now)
    records = [o.record for o in settled if o.topic == "declarations.verdicts"]
    for bucket in buckets.values():
        records += [o.record for o in processor.expire(bucket, now, all_open=True) if o.topic == "declarations.verdicts"]
    lines = [verdict_line(r) for r in records]
    by_key = {(line["ebpCode"], line["orderNo"]): line for line in lines}
    for line in lines:
        line["refused"] = []
    for refusal in refusals:
        key = _declaration_of(refusal, buckets)
        if key not in by_key:
            by_key[key] = {"ebpCode": key[0] or None, "orderNo": key[1] or None, "status": "refused", "failures": [],
                           "missing": [], "tax": None, "taxableValue": None, "refused": []}
            lines.append(by_key[key])
        by_key[key]["refused"].append({"guid": refusal.get("guid"), "code": refusal["code"],
                                       "message": refusal["message"]})
    lines.sort(key=lambda line: (line["ebpCode"] or "", line["orderNo"] or "", line["status"]))
    return lines


def _refusal_of(receipt: dict, doc: dict) -> dict:
    """A refusal receipt of the engine as a ``refused`` entry (with the keys to place it)."""
    [failure] = receipt["failures"]
    return {"guid": doc.get("guid"), "code": failure["code"], "message": failure["message"],
            **{k: doc.get(k) for k in ("ebpCode", "orderNo", "logisticsCode", "logisticsNo")}}


def _declaration_of(refusal: dict, buckets: dict[str, dict]) -> tuple[str, str]:
    """(ebpCode, orderNo) of the declaration a refused document belongs to. A waybill names no
    ebpCode: it belongs to the declaration whose inventory names it, or to its order number's
    only declaration."""
    order_no = str(refusal.get("orderNo") or "").strip()
    ebp = str(refusal.get("ebpCode") or "").strip()
    bucket = buckets.get(order_no)
    if ebp or bucket is None:
        return ebp, order_no
    key = [str(refusal.get("logisticsCode") or "").strip(), str(refusal.get("logisticsNo") or "").strip()]
    named = [d for d in bucket["declarations"] if d["waybillKey"] == key] or bucket["declarations"]
    return (named[0]["ebpCode"], order_no) if len(named) == 1 else ("", order_no)


def check(documents: list[dict], **options) -> list[dict]:
    return asyncio.run(check_documents(documents, **options))
