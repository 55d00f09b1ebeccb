"""The fuzz targets of `make test` and `make fuzz`: bytes in, and the properties every input must keep.

* ``ceb_xml``: the CEB XML reader; every input parses or raises ``CebError`` with a reason, and
  every document it refuses names why.
* ``submit``: one Submit item through the gateway's item handler (``submission.examine``, what
  the gRPC Submit calls for each item); the first byte picks the message type and format. Every
  item is accepted, refused with a reason (and dead-lettered), or refused whole with
  PERMISSION_DENIED and a message. ``SIGNATURES`` is the hook for signed messages.
* ``worker``: one record on a worker's input topic (the first byte picks the topic), decoded as
  the worker decodes it and handed to that worker's pure handling (order_match's batch engine,
  tax_guarantee's processor on an in-memory store, the returns engine). Every record is acted
  on or refused with a code, a field and a message; an undecodable one with the codec's reason.

A target returns the fate of the input ("accepted", "refused", ...); anything it raises is a
crash. Nothing here talks to Kafka or Redis.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal
from functools import lru_cache

from services.common.avro import SCHEMA_OF_KIND, WireError, codec
from services.common.ceb import CebError, parse_message
from services.common.documents import MESSAGE_TYPES
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.gateway import submission
from services.gateway.errors import CallError
from services.order_match import batch as match_batch
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry
from services.returns import bucket as returns_bucket
from services.returns import waybills as returns_waybills
from services.returns.engine import BUCKET_SOURCES, DELIVERY_SOURCE, SCHEMA_OF_SOURCE, WAYBILL_SOURCES, ReturnsEngine
from services.returns.inputs import InputError
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.store import MemoryAccountStore

NOW_MS = 1749960000000  # 2025-06-15 12:00 China time
MAX_BYTES = 1 << 20
WIRE = codec()

# Signed messages (services/common/signing, gateway verification) come from another change: once a
# SignaturePolicy can be built from test certificates, set it here and every fuzzed XML item is
# also checked against it (submission.examine's ``signatures``).
SIGNATURES = None

SUBMIT_TYPES = sorted(submission.SENDER_FIELDS)
SUBMIT_FORMATS = (submission.CEB_XML, submission.AVRO, "", "JSON")
# the submitting client speaks for every code the generated and sample documents name
SUBMIT_CODES = frozenset()  # filled by set_submit_codes (the corpus knows them)

ORDER_MATCH_TOPICS = {"documents.order": SCHEMA_OF_KIND["order"], "documents.payment": SCHEMA_OF_KIND["payment"],
                      "documents.logistics": SCHEMA_OF_KIND["logistics"],
                      "documents.inventory": SCHEMA_OF_KIND["inventory"]}
TAX_GUARANTEE_TOPICS = {"declarations.matched": "sandan.Verdict", "guarantee.commands": "sandan.GuaranteeCommand"}
RETURNS_TOPICS = dict(SCHEMA_OF_SOURCE)
WORKER_TOPICS = sorted({**ORDER_MATCH_TOPICS, **TAX_GUARANTEE_TOPICS, **RETURNS_TOPICS})


class Unclear(AssertionError):
    """An input refused without a clear code, field or message."""


def ceb_xml(data: bytes) -> str:
    try:
        message = parse_message(data, source="fuzz.xml", lenient=True, xsd_dir="", max_bytes=MAX_BYTES)
    except CebError as exc:
        if not str(exc).startswith("fuzz.xml: ") or not exc.detail.strip():
            raise Unclear(f"a refusal without a reason: {exc!r}") from None
        return "refused"
    for bad in message.rejected:
        if not bad.errors or not all(e.strip() for e in bad.errors):
            raise Unclear(f"document {bad.index} refused without a reason")
    return "accepted" if not message.rejected else "partly"


def set_submit_codes(codes) -> None:
    global SUBMIT_CODES
    SUBMIT_CODES = frozenset(codes)


def submit(data: bytes) -> str:
    head = data[:1] or b"\0"
    message_type = SUBMIT_TYPES[head[0] % len(SUBMIT_TYPES)]
    fmt = SUBMIT_FORMATS[(head[0] // len(SUBMIT_TYPES)) % len(SUBMIT_FORMATS)]
    try:
        done = submission.examine(fmt, message_type, data[1:], SUBMIT_CODES, "fuzz", signatures=SIGNATURES)
    except CallError as exc:
        if exc.status != submission.PERMISSION_DENIED or not exc.message.strip():
            raise Unclear(f"Submit ended {exc.status}: {exc.message}") from None
        return "permission denied"
    for refused in done.refused:
        if not refused.info.strip():
            raise Unclear("an item refused without a reason")
    for out in done.outputs:  # what the gateway publishes must be encodable as the Kafka publisher does
        WIRE.encode(out.schema, out.record)
    letters = [o for o in done.outputs if o.topic == "deadletter"]
    if done.refused and not letters:
        raise Unclear("a refused item was not dead-lettered")
    return "refused" if done.refused and not done.accepted else ("partly" if done.refused else "accepted")


@lru_cache(maxsize=1)
def _engines():
    settings = RuleSettings.from_env()
    rates = load_rates()
    return settings, rates, ReturnsEngine()


def worker(data: bytes) -> str:
    head = data[:1] or b"\0"
    topic = WORKER_TOPICS[head[0] % len(WORKER_TOPICS)]
    return asyncio.run(worker_record(topic, data[1:])) if topic in TAX_GUARANTEE_TOPICS else \
        _run_sync(worker_record(topic, data[1:]))


def _run_sync(coroutine):
    """Run a coroutine that never awaits anything real (the in-memory stores) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine waited on something")


async def worker_record(topic: str, value: bytes) -> str:
    """One record on ``topic`` as its worker takes it (decode, check, handle)."""
    try:
        name, record = WIRE.decode(value)
    except WireError as exc:
        if not str(exc).strip():
            raise Unclear("an undecodable record without a reason") from None
        return "undecodable"
    settings, rates, returns_engine = _engines()
    if topic in ORDER_MATCH_TOPICS:
        if name != ORDER_MATCH_TOPICS[topic] or not isinstance(record.get("orderNo"), str):
            return "undecodable"  # the worker's arrival_of: UNDECODABLE with the reason
        processor = MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=settings,
                                   rates=rates, timeout_ms=86_400_000, app_time_skew_ms=300_000)
        key = record["orderNo"].strip()
        arrival = match_batch.Arrival(key, record, value, f"{topic}:0:0", NOW_MS)
        done = await match_batch.run(processor, [arrival], lambda a: matcher.new_bucket(a.key), NOW_MS)
        for out in done.outputs:
            WIRE.encode(out.schema, out.record)
        return "handled"
    if topic in TAX_GUARANTEE_TOPICS:
        if name != TAX_GUARANTEE_TOPICS[topic]:
            return "undecodable"
        processor = GuaranteeProcessor(store=MemoryAccountStore(), quota=MemoryQuotaStore(),
                                       thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30, rates=rates)
        step = processor.on_verdict if topic == "declarations.matched" else processor.on_command
        handled = await step(record, NOW_MS)
        if handled.rejected_input is not None:
            r = handled.rejected_input
            if not (r.code.strip() and r.field.strip() and r.message.strip()):
                raise Unclear(f"a refusal without code, field or message: {r!r}")
            return f"refused {r.code}"
        for out in handled.outputs:
            WIRE.encode(out.schema, out.record)
        return "handled"
    if name != RETURNS_TOPICS[topic]:
        return "wrong schema"  # the returns worker's WRONG_SCHEMA dead letter
    try:
        if topic == DELIVERY_SOURCE:
            step = returns_engine.take_delivery(record)
        elif topic in BUCKET_SOURCES:
            key = (record.get("orderNo") or "").strip()
            if not key:
                return "refused INVALID_FIELD"
            step = returns_engine.take(returns_bucket.new_bucket(key), topic, record, value, NOW_MS)
        else:
            assert topic in WAYBILL_SOURCES
            key = (record.get("logisticsNo") or "").strip()
            if not key:
                return "refused INVALID_FIELD"
            step = returns_engine.take_waybill(returns_waybills.new_entry(key), topic, record, value, NOW_MS)
    except InputError as exc:
        if not (exc.code.strip() and exc.field.strip() and exc.message.strip()):
            raise Unclear(f"a refusal without code, field or message: {exc!r}") from None
        return f"refused {exc.code}"
    for out in step.outputs:
        WIRE.encode(out.schema, out.record)
    return "handled"


__all__ = ["ceb_xml", "submit", "worker", "worker_record", "Unclear", "MESSAGE_TYPES"]
