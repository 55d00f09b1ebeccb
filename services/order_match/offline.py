"""``sandan check``: the stream's engine run over a set of documents, without Kafka or Redis.

The answer must not depend on the order files are named in, so documents are applied in the
order of application (DOMAIN §2a: ``appTime``, then ``appType`` 1, 2, 3; then kind and guid),
one at a time as a stream receiving them in that order would: a declaration is decided when
its last document is applied (so the annual quota is spent in that order), and an order or
waybill changed or withdrawn after its declaration was verified is refused LOCKED. Quotas
start at zero or at the given year-to-date figures. The machine's clock at the run stands for
every document's arrival (``APP_TIME``). A declaration still missing documents at the end is
INCOMPLETE, unless documents naming another platform or waybill number than its order's make
one set with it (``matcher.merge_at_deadline``, as the stream does at the deadline).
A declaration decided more than once (rejected, then re-opened by a correction)
has one line: its last verdict.

Each line carries ``refused``: the documents of that declaration refused on their own
(DUPLICATE, APP_TIME, NOT_FOUND ..., and the reader's field refusals handed in by the caller).
Refusals of no declaration that has a line come on lines of their own, status ``refused``.
"""
from __future__ import annotations

import asyncio
import csv
from decimal import Decimal
from pathlib import Path

from services.common import pii
from services.common.clock import now_ms as clock_ms
from services.common.documents import DECLARATION_KINDS, kind_of
from services.common.money import AmountError, amount_str, parse_amount
from services.common import codes
from services.order_match import matcher
from services.order_match.processor import MatchProcessor, Settling
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import RateTable, load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

_KIND_RANK = {kind: i for i, kind in enumerate(DECLARATION_KINDS)}


class YearToDateError(ValueError):
    pass


YEAR_TO_DATE_COLUMNS = ("buyerIdNumber", "year", "amount")  # and optionally buyerIdType, which is not counted


def load_year_to_date(path: str | Path) -> dict[tuple[str, int], Decimal]:
    """CSV with columns buyerIdNumber,year,amount (a buyerIdType column may be there and is
    ignored: the quota counts the ID number whatever its type) → quota store seed, keyed by
    ``pii.buyer_key``. A bad value is a ``YearToDateError`` naming file, line and column."""
    seed: dict[tuple[str, int], Decimal] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in YEAR_TO_DATE_COLUMNS if name not in header]
            if missing:
                raise YearToDateError(f"{path}: line 1: the header must name {', '.join(YEAR_TO_DATE_COLUMNS)}"
                                      f" (missing {', '.join(missing)})")
            column = {name: header.index(name) for name in YEAR_TO_DATE_COLUMNS}
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) > len(header):  # "1,000" unquoted, for one: never guess which cell is meant
                    raise YearToDateError(f"{path}: line {reader.line_num}, column {len(header) + 1}: {len(row)}"
                                          f" fields, the header names {len(header)}")
                cells = {name: row[i].strip() if i < len(row) else None for name, i in column.items()}

                def where(name: str) -> str:
                    return f"{path}: line {reader.line_num}, column {column[name] + 1} ({name})"

                number = pii.buyer_id_number(cells["buyerIdNumber"])
                if not number:
                    raise YearToDateError(f"{where('buyerIdNumber')}: no ID number")
                year_text, amount_text = cells["year"], cells["amount"]
                if year_text is None or not (year_text.isascii() and year_text.isdigit() and len(year_text) == 4):
                    raise YearToDateError(f"{where('year')}: {year_text!r} is not a four-digit year")
                amount = _year_to_date_amount(amount_text)
                if amount is None:
                    raise YearToDateError(f"{where('amount')}: {amount_text!r} is not an amount (plain digits with"
                                          f" an optional fraction of at most 5 digits: no sign, exponent, NaN"
                                          f" or infinity)")
                key = (pii.buyer_key(number), int(year_text))
                seed[key] = seed.get(key, Decimal(0)) + amount
    except csv.Error as exc:
        raise YearToDateError(f"{path}: line {reader.line_num}: not a CSV row ({exc})") from None
    except UnicodeDecodeError:
        raise YearToDateError(f"{path}: not UTF-8 text") from None
    return seed


def _year_to_date_amount(text: str | None) -> Decimal | None:
    """A non-negative amount as the CEB standard writes one (DOMAIN §2a), else None."""
    if not text or text[0] in "+-":
        return None
    try:
        return parse_amount(text)
    except AmountError:
        return None


def _doc_order(doc: dict) -> tuple:
    return (matcher.order_key(doc), _KIND_RANK.get(kind_of(doc), 9), doc.get("guid") or "", matcher.fingerprint(doc))


def verdict_line(record: dict) -> dict:
    """A ``declarations.verdicts`` record as the JSON object ``sandan check`` prints: amounts as
    computed (P to the 0.00001 it may have, each tax kind to the fen it is rounded to). When the
    amounts added up beyond what a record carries (``AMOUNT_RANGE``) nothing could be kept:
    ``tax`` and ``taxableValue`` are null and the failure says why."""
    computed = record["status"] != "incomplete" and not any(f["code"] == codes.AMOUNT_RANGE
                                                            for f in record["failures"])
    return {
        "ebpCode": record["ebpCode"], "orderNo": record["orderNo"], "status": record["status"],
        "failures": [dict(f) for f in record["failures"]], "missing": list(record["missing"]),
        "tax": {"customs": amount_str(record["customsTax"]), "consumption": amount_str(record["consumptionTax"]),
                "vat": amount_str(record["valueAddedTax"]), "total": amount_str(record["taxTotal"])}
        if computed else None,
        "taxableValue": amount_str(record["taxableValue"]) if computed else None,
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
    records: list[dict] = []
    for doc in sorted(documents, key=_doc_order):
        key = (doc.get("orderNo") or "").strip()
        bucket = buckets.setdefault(key, matcher.new_bucket(key))
        taken, ready = processor.take(bucket, doc, now)
        refusals += [_refusal_of(o.record, doc) for o in taken if o.topic == "receipts"]
        if ready:
            settled = await processor.settle_many([Settling(bucket, ebp_code) for ebp_code in ready], now)
            records += [o.record for o in settled if o.topic == "declarations.verdicts"]
    for bucket in buckets.values():
        closed = await processor.close_due(bucket, now, now, all_open=True)
        records += [o.record for o in closed if o.topic == "declarations.verdicts"]
    # a declaration decided again: its last verdict (lines of waybills alone, ebpCode "", each stay)
    last = {(r["ebpCode"], r["orderNo"]) if r["ebpCode"] else i: r for i, r in enumerate(records)}
    lines = [verdict_line(r) for r in last.values()]
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
                                       "field": refusal.get("field"), "message": refusal["message"]})
    lines.sort(key=lambda line: (line["ebpCode"] or "", line["orderNo"] or "", line["status"]))
    return lines


def _refusal_of(receipt: dict, doc: dict) -> dict:
    """A refusal receipt of the engine as a ``refused`` entry (with the keys to place it)."""
    [failure] = receipt["failures"]
    return {"guid": doc.get("guid"), "code": failure["code"], "field": failure.get("field"),
            "message": failure["message"],
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
