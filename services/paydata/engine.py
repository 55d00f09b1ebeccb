"""The payment-data check: what happens on a verdict, an operator's request, an upload, a tick.

Adapters are handed in (the Redis store, the platDataOpen caller, a publisher that returns once
Kafka has the records, the certificate lookup), so this module imports no client library.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from fractions import Fraction

from services.common.outputs import Output
from services.common.signing.registry import CertificateBook
from services.paydata import outcomes, sampler, signature
from services.paydata.compare import ORDER_NO, Mismatch, compare
from services.paydata.protocol import ACCEPTED, SESSION_USED, UNKNOWN_SESSION, UploadError, parse_upload
from services.paydata.sessions import (DONE, MISSING, MISSING_OUTCOME, OPEN, Session, admit, is_late,
                                       outcome_of)

log = logging.getLogger("sandan.paydata")


class PaydataEngine:
    def __init__(self, *, store, open_request: Callable[[str, str, str], None],
                 publish: Callable[[list[Output]], Awaitable[None]],
                 book: CertificateBook,
                 share: Fraction, sample_key: bytes, deadline_ms: int, metrics) -> None:
        self.store, self.open_request, self.publish = store, open_request, publish
        self.book, self.share, self.sample_key = book, share, sample_key
        self.deadline_ms, self.metrics = deadline_ms, metrics
        self.in_flight: set[str] = set()  # outbox entries being published by an upload right now

    # --- asking ----------------------------------------------------------------------------
    async def on_verdict(self, verdict: dict, now: int) -> None:
        if verdict.get("status") != "verified":
            return
        declaration = verdict["declarationId"]
        if sampler.picked(declaration, self.share, self.sample_key):
            await self.request(verdict["ebpCode"], verdict["orderNo"], "sample", f"sample:{declaration}", now)

    async def on_request(self, record: dict, now: int) -> None:
        codes = [record["ebpCode"]] if record.get("ebpCode") else await self.store.platforms_of(record["orderNo"])
        if not codes:
            log.warning("paydata request %s: no declaration of order %s is known", record["requestId"],
                        record["orderNo"])
            self.metrics.requests.labels(reason="operator", result="unknown_order").inc()
        for code in codes:
            await self.request(code, record["orderNo"], "operator", f"operator:{record['requestId']}:{code}", now)

    async def request(self, ebp_code: str, order_no: str, reason: str, request_id: str, now: int) -> None:
        url = await self.store.platform_url(ebp_code)
        if url is None:
            log.warning("paydata: platform %s has no registered platDataOpen URL; order %s waits for it", ebp_code,
                        order_no)
            self.metrics.requests.labels(reason=reason, result="no_platform_url").inc()
            await self.store.hold(request_id, {"ebpCode": ebp_code, "orderNo": order_no, "reason": reason, "at": now})
            return
        await self.store.release(request_id)
        session = Session(uuid.uuid4().hex, f"{ebp_code}:{order_no}", ebp_code, order_no, reason, now,
                          now + self.deadline_ms)
        if await self.store.open(request_id, session) is not None:
            return  # this request was handled before (a redelivered verdict or request)
        self.metrics.requests.labels(reason=reason, result="opened").inc()
        self.open_request(url, order_no, session.session_id)

    # --- receiving -------------------------------------------------------------------------
    async def upload(self, text: str, now: int) -> tuple[str, str]:
        """The answer (code, message) to a realTimeDataUpload carrying ``text`` (payExInfoStr)."""
        try:
            code, message = await self._upload(text, now)
        except UploadError as exc:
            code, message = exc.code, f"{exc.field}: {exc.message}"
            log.info("paydata: an upload refused with %s (%s)", code, exc.field)  # the field, never its value
        self.metrics.uploads.labels(code=code).inc()
        return code, message

    async def _upload(self, text: str, now: int) -> tuple[str, str]:
        upload = parse_upload(text)
        session = await self.store.session(upload.session_id)
        admit(session, upload.session_id, upload.head["ebpCode"])
        signature.check(upload, session.ebp_code, self.book,
                        datetime.fromtimestamp(now / 1000, timezone.utc))
        facts = await self.store.facts(session.declaration_id)
        if facts is None:
            found = [Mismatch(ORDER_NO, "the declaration's order and payment are not known to the check")]
        else:
            found = compare(facts, upload.head, upload.lists, upload.total_amount)
        late = is_late(session, now)
        kind = outcome_of(late, bool(found))
        outputs = [outcomes.raw_upload(session, text, now, upload.cert_no),
                   outcomes.outcome(session, kind, found, now, now, upload.cert_no)]
        decided = await self.store.decide(session.session_id, (OPEN, MISSING), DONE, outputs)
        if decided == -1:
            raise UploadError(UNKNOWN_SESSION, "sessionID", "the session has expired")
        if decided == 0:
            raise UploadError(SESSION_USED, "sessionID", "this session has already been answered")
        await self._send(session.session_id, DONE, outputs)
        self._count(kind, found)
        if late:
            return ACCEPTED, f"received after the deadline: {kind}"
        return ACCEPTED, ""

    # --- the clock -------------------------------------------------------------------------
    async def tick(self, now: int) -> None:
        """Sessions past their deadline become PAYDATA_MISSING; outbox entries a crash left are sent."""
        for session_id in await self.store.due(now):
            session = await self.store.session(session_id)
            if session is None:
                await self.store.drop_deadline(session_id)
                continue
            outputs = [outcomes.outcome(session, MISSING_OUTCOME, [], now)]
            if await self.store.decide(session_id, (OPEN,), MISSING, outputs) == 1:
                await self._send(session_id, MISSING, outputs)
                self._count(MISSING_OUTCOME, [])
            else:
                await self.store.drop_deadline(session_id)
        for request_id, ask in (await self.store.held()).items():
            if now - ask["at"] > self.store.retention_s * 1000:
                await self.store.release(request_id)
            elif await self.store.platform_url(ask["ebpCode"]) is not None:
                await self.request(ask["ebpCode"], ask["orderNo"], ask["reason"], request_id, now)
        for entry, outputs in (await self.store.pending()).items():
            if entry not in self.in_flight:
                session_id, state = entry.rsplit(":", 1)
                await self._send(session_id, state, outputs)
        self.metrics.open_sessions.set(await self.store.open_sessions())

    async def _send(self, session_id: str, state: str, outputs: list[Output]) -> None:
        entry = f"{session_id}:{state}"
        self.in_flight.add(entry)
        try:
            await self.publish(outputs)
        except Exception as exc:  # noqa: BLE001 - kept in the outbox: the next tick sends it again
            log.warning("paydata: outcome of session %s not on Kafka yet (%s); the outbox keeps it", session_id,
                        type(exc).__name__)
            return
        finally:
            self.in_flight.discard(entry)
        await self.store.sent(session_id, state)

    def _count(self, kind: str, found: list[Mismatch]) -> None:
        self.metrics.outcomes.labels(outcome=kind).inc()
        for m in found:
            self.metrics.mismatches.labels(field=m.field).inc()
