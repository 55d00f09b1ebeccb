"""The gateway's gRPC methods: thin handlers around auth, submission, reports and Kafka.

Every call goes through ``_call``: authenticate, check the role, take a rate-limit token,
count the call by its final status, and turn a ``CallError`` into the matching gRPC
status. Streams end with UNAVAILABLE when the gateway shuts down, after the answer in
flight, so clients know to reconnect (subscribers with their last cursor).
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError
from redis.exceptions import RedisError

from services.common.avro import WireError, codec
from services.common.clock import now_ms
from services.common.metrics import count_dead_letters
from services.common.outputs import Output
from services.gateway import auth, cursor, messages
from services.gateway.client_registry import Client, ClientRegistry
from services.gateway.delivered import DeliveredIndex, MemoryDelivered
from services.gateway.errors import (FAILED_PRECONDITION, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAUTHENTICATED,
                                     UNAVAILABLE, CallError)
from services.gateway.kafka_bridge import LogRecord, StreamStats
from services.gateway.metrics import GatewayMetrics
from services.gateway.proto import gateway_pb2 as pb
from services.gateway.proto import gateway_pb2_grpc as pb_grpc
from services.gateway.ratelimit import RateLimiter
from services.gateway.receipt_envelopes import ReceiptSigner
from services.gateway.receipt_groups import xml_messages
from services.gateway.reports import customs_report
from services.gateway.signatures import SignaturePolicy
from services.gateway.submission import SENDER_FIELDS, examine

log = logging.getLogger("sandan.gateway")
STREAMING = frozenset({"Submit", "Subscribe", "SubscribeBatches", "Receipts", "PaydataChecks"})
# A verdict record is ~1-2 KB: 200 of them stay far below gRPC's 4 MB default message limit.
BATCH_DECLARATIONS = 200
CLEARED, RECEIPTS = "declarations.cleared", "receipts"
PAYDATA = "paydata.outcomes"
SHUTTING_DOWN = "the gateway is shutting down; reconnect (subscribers: resume with your last cursor)"
REGISTRY_WAIT_S = 10.0  # how long a Submit waits for the certificate registry after a start
# A Submit ended by a refusal mid-stream reads (and drops) what the client is still sending, up
# to this long or this many items, before its status goes out: grpcio's asyncio client reports a
# write that meets an ended stream as INTERNAL in place of the server's status (grpc/grpc#36066)
DRAIN_S = 0.5
DRAIN_ITEMS = 1_000


class Publisher(Protocol):
    async def publish(self, outputs: list[Output]) -> None: ...


class Reader(Protocol):
    def read(self, short_topic: str, positions: dict[int, int] | None, latest: bool, stop: asyncio.Event,
             stats: StreamStats, on_lag) -> AsyncIterator[list[LogRecord]]: ...


class _LagShare:
    """One stream's part of its client's lag gauge (streams of a client add up)."""

    def __init__(self, gauge) -> None:
        self.gauge, self.last = gauge, 0

    def report(self, lag: int) -> None:
        self.gauge.inc(lag - self.last)
        self.last = lag

    def close(self) -> None:
        self.gauge.dec(self.last)
        self.last = 0


@dataclass(eq=False)
class _Held:
    """An open stream's client as authenticated when it began, and the event that ends it."""
    client: Client
    stop: asyncio.Event
    revoked: bool = False


class Gateway(pb_grpc.GatewayServicer):
    def __init__(self, *, registry: ClientRegistry, publisher: Publisher, reader: Reader, limiter: RateLimiter,
                 metrics: GatewayMetrics, mutual_tls: bool = False, clock=now_ms, recheck_s: float = 2.0,
                 max_streams_per_client: int = 16, delivered: DeliveredIndex | None = None,
                 report_skew_ms: int = 300_000, signatures: SignaturePolicy | None = None,
                 receipt_signer: ReceiptSigner | None = None) -> None:
        self.registry, self.publisher, self.reader, self.limiter = registry, publisher, reader, limiter
        self.metrics, self.mutual_tls, self.clock = metrics, mutual_tls, clock
        self.recheck_s, self.max_streams_per_client = recheck_s, max_streams_per_client
        self.delivered = delivered if delivered is not None else MemoryDelivered()
        self.report_skew_ms = report_skew_ms
        self.signatures = signatures
        self.receipt_signer = receipt_signer  # None: XML receipts go without their signed envelope
        self.stopping = asyncio.Event()
        self.streams: list[StreamStats] = []  # open subscriber streams (their buffers, for metrics and tests)
        self.held: set[_Held] = set()  # open subscriber streams' credentials, checked again on a schedule
        self.open_by_client: Counter[str] = Counter()
        self.wire = codec()
        registry.on_change = self.recheck_credentials

    def begin_shutdown(self) -> None:
        self.stopping.set()
        for held in list(self.held):
            held.stop.set()

    async def watch_credentials(self) -> None:
        """Until shutdown: every ``recheck_s`` look at the clients file again and end the streams
        whose credentials no longer hold (a change of the file noticed by a call does it at once)."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), self.recheck_s)
            except TimeoutError:
                pass
            self.registry.refresh()
            self.recheck_credentials()

    def recheck_credentials(self) -> None:
        for held in list(self.held):
            if self.registry.current(held.client.id) != held.client:  # removed, new token, other role or codes
                held.revoked = True
                held.stop.set()

    # --- enterprise -----------------------------------------------------------------------

    async def Submit(self, request_iterator, context):
        async with self._call(context, "Submit") as client:
            source = f"gateway:{client.id}"
            sequence = 0
            await self._registry_loaded()
            # the call is accepted: headers now, so a client may wait for them before it writes
            # (a refusal above comes before any, with its own status: see GatewayClient.submit)
            await context.send_initial_metadata(())
            try:
                async with aclosing(self._until_stopping(request_iterator)) as items:
                    async for item in items:
                        self.limiter.take(client.id)
                        sequence += 1
                        submission = await asyncio.to_thread(examine, _format_name(item.format), item.message_type,
                                                             item.payload, client.codes, source, client.messages,
                                                             self.signatures)
                        await self.publisher.publish(submission.outputs)  # acknowledged before the answer
                        count_dead_letters(submission.outputs)
                        answer = messages.submit_answer(item.item_id, sequence, submission, self.clock())
                        self._count_submission(item.message_type, answer)
                        yield answer
            except CallError as exc:
                if exc.message != SHUTTING_DOWN and not context.done():
                    await _drain(request_iterator)
                raise

    async def _registry_loaded(self) -> None:
        if self.signatures is None or self.signatures.ready.is_set():
            return
        try:
            await asyncio.wait_for(self.signatures.ready.wait(), REGISTRY_WAIT_S)
        except TimeoutError:
            raise CallError(UNAVAILABLE, "the certificate registry is still loading (is Kafka up?); "
                                         "try again") from None

    async def Receipts(self, request, context):
        async with self._call(context, "Receipts") as client:
            as_xml = request.format == pb.CEB_XML
            before = request.cursor  # where the stream stands: an XML message may end before its read does
            async with aclosing(self._follow(client, "Receipts", RECEIPTS, request)) as batches:
                async for batch in batches:
                    mine = []
                    for i, record in enumerate(batch):
                        if (record.key or b"").decode(errors="replace") not in client.codes:
                            continue  # the topic is keyed by receiver: skip others' receipts undecoded
                        receipt = self._decode(record, RECEIPTS)
                        if receipt is not None and receipt["receiver"] in client.codes:
                            if as_xml:
                                mine.append((i, receipt))
                            else:
                                yield messages.receipt_record(record, receipt)
                    if as_xml and mine:
                        for at, message, envelope in await asyncio.to_thread(self._xml_receipts, batch, mine,
                                                                             before):
                            yield messages.receipt_message(at, message, envelope)
                    before = batch[-1].cursor

    def _xml_receipts(self, batch, mine, before) -> list[tuple[str, object, bytes]]:
        signer = self.receipt_signer
        return [(at, message, signer.envelope(message) if signer is not None else b"")
                for at, message in xml_messages(batch, mine, before)]

    # --- customs --------------------------------------------------------------------------

    async def Subscribe(self, request, context):
        async with self._call(context, "Subscribe") as client:
            async with aclosing(self._follow(client, "Subscribe", CLEARED, request)) as batches:
                async for batch in batches:
                    for declaration in await self._cleared(batch):
                        yield declaration

    async def SubscribeBatches(self, request, context):
        async with self._call(context, "SubscribeBatches") as client:
            async with aclosing(self._follow(client, "SubscribeBatches", CLEARED, request)) as batches:
                async for batch in batches:
                    declarations = await self._cleared(batch)
                    for start in range(0, len(declarations), BATCH_DECLARATIONS):
                        yield pb.ClearedBatch(declarations=declarations[start:start + BATCH_DECLARATIONS])

    async def _cleared(self, batch: list[LogRecord]) -> list[pb.ClearedDeclaration]:
        """The batch's declarations, entered in the delivered index before any is sent (a report may follow)."""
        cleared = []
        for record in batch:
            verdict = self._decode(record, CLEARED)
            if verdict is not None:
                cleared.append(messages.cleared_declaration(record, verdict))
        try:
            await self.delivered.add(d.declaration_id for d in cleared)
        except RedisError as exc:
            raise CallError(UNAVAILABLE, f"the gateway's index of delivered declarations did not answer "
                                         f"({type(exc).__name__}); resume with your last cursor") from exc
        return cleared

    async def PaydataChecks(self, request, context):
        async with self._call(context, "PaydataChecks") as client:
            async with aclosing(self._follow(client, "PaydataChecks", PAYDATA, request)) as batches:
                async for batch in batches:
                    for record in batch:
                        outcome = self._decode(record, PAYDATA)
                        if outcome is not None:
                            yield messages.paydata_check(record, outcome)

    async def Report(self, request, context):
        async with self._call(context, "Report") as client:
            output = customs_report(messages.decision(request), client.id, self.clock(), self.report_skew_ms)
            declaration = output.record["declarationId"]
            try:
                known = await self.delivered.contains(declaration)
            except RedisError as exc:
                raise CallError(UNAVAILABLE, f"the gateway's index of delivered declarations did not answer "
                                             f"({type(exc).__name__}); send the report again") from exc
            if not known:
                raise CallError(FAILED_PRECONDITION, f"ebp_code, order_no: {declaration} is not a cleared declaration "
                                                     f"this gateway has delivered (report only what Subscribe sent)")
            await self.publisher.publish([output])
            return pb.ReportAck(report_id=output.record["reportId"], declaration_id=output.record["declarationId"])

    # --- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _call(self, context, method: str):
        code = "OK"
        streaming = method in STREAMING
        if streaming:
            self.metrics.active_streams.labels(method=method).inc()
        try:
            try:
                client = auth.authenticate(self.registry, context.invocation_metadata() or (),
                                           self._certificate_names(context))
                auth.authorize(client, method)
                self.limiter.take(client.id)
                yield client
            except CallError as exc:
                code = exc.status
                log.info("%s refused with %s: %s", method, exc.status, exc.message)
                if context.done() or context.cancelled():  # the client has gone: nobody to answer
                    raise asyncio.CancelledError from exc
                await context.abort(grpc.StatusCode[exc.status], exc.message)
        except grpc.aio.AbortError:
            raise
        except (asyncio.CancelledError, GeneratorExit):
            remaining = context.time_remaining()
            code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            raise
        except Exception as exc:
            code = "INTERNAL"
            log.exception("%s failed", method)
            if context.done() or context.cancelled():  # the client has gone: nobody to answer
                raise asyncio.CancelledError from exc
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the gateway; the call may be retried")
        finally:
            self.metrics.calls.labels(method=method, code=code).inc()
            if streaming:
                self.metrics.active_streams.labels(method=method).dec()

    def _certificate_names(self, context) -> frozenset[str] | None:
        if not self.mutual_tls:
            return None
        found = context.auth_context() or {}
        names = list(found.get("x509_common_name", ())) + list(found.get("x509_subject_alternative_name", ()))
        return frozenset(n.decode(errors="replace") if isinstance(n, bytes) else n for n in names)

    async def _until_stopping(self, request_iterator):
        """The client's items, until it ends the stream or the gateway begins to shut down."""
        iterator = request_iterator.__aiter__()
        received = 0
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            while True:
                if self.stopping.is_set():  # a client that keeps sending does not hold the shutdown open
                    raise CallError(UNAVAILABLE, SHUTTING_DOWN)
                nxt = asyncio.ensure_future(iterator.__anext__())
                await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    nxt.cancel()
                    raise CallError(UNAVAILABLE, SHUTTING_DOWN)
                try:
                    item = nxt.result()
                except StopAsyncIteration:
                    return
                except DecodeError:  # bytes that are no SubmitItem: the client's fault, not the gateway's
                    raise CallError(INVALID_ARGUMENT, f"item {received + 1}: not a SubmitItem protobuf message "
                                                      f"(see schemas/proto/gateway.proto)") from None
                received += 1
                yield item  # an item already read is answered even when shutdown began meanwhile
        finally:
            stopped.cancel()

    async def _follow(self, client: Client, method: str, short_topic: str, request
                      ) -> AsyncIterator[list[LogRecord]]:
        positions = cursor.decode(request.cursor, short_topic) if request.cursor else None
        if self.open_by_client[client.id] >= self.max_streams_per_client:
            raise CallError(RESOURCE_EXHAUSTED, f"client {client.id} already has {self.open_by_client[client.id]} "
                                                f"open streams (SANDAN_GATEWAY_MAX_STREAMS_PER_CLIENT); close one first")
        held = _Held(client, asyncio.Event())
        if self.stopping.is_set():
            held.stop.set()
        stats = StreamStats(method, client.id)
        lag = _LagShare(self.metrics.lag.labels(method=method, client=client.id))
        streamed = self.metrics.streamed.labels(method=method)
        self.streams.append(stats)
        self.held.add(held)
        self.open_by_client[client.id] += 1
        try:
            records = self.reader.read(short_topic, positions, request.start == pb.START_LATEST, held.stop,
                                       stats, lag.report)
            async with aclosing(records) as source:
                async for batch in source:
                    yield batch
                    stats.sent += len(batch)
                    streamed.inc(len(batch))
        finally:
            self.streams.remove(stats)
            self.held.discard(held)
            self.open_by_client[client.id] -= 1
            if not self.open_by_client[client.id]:
                del self.open_by_client[client.id]
            lag.close()
        if held.revoked:
            log.info("%s of client %s ended: its credentials were revoked or changed", method, client.id)
            raise CallError(UNAUTHENTICATED, f"the credentials of client {client.id} were revoked or changed; "
                                             f"reconnect with the current token (resume with your last cursor)")
        raise CallError(UNAVAILABLE, SHUTTING_DOWN)  # otherwise the reader only ends when the gateway stops

    def _decode(self, record: LogRecord, short_topic: str) -> dict | None:
        try:
            return self.wire.decode(record.value)[1]
        except WireError as exc:  # a bad record upstream must not end every subscriber's stream
            log.warning("skipping undecodable record %s/%d@%d: %s", short_topic, record.partition, record.offset, exc)
            return None

    def _count_submission(self, message_type: str, answer: pb.SubmitAnswer) -> None:
        self.metrics.items.labels(outcome=pb.Outcome.Name(answer.outcome)).inc()
        message = message_type if message_type in SENDER_FIELDS else "other"  # bounded label values
        if answer.accepted:
            self.metrics.documents.labels(message=message, outcome="accepted").inc(len(answer.accepted))
        if answer.refused:
            self.metrics.documents.labels(message=message, outcome="refused").inc(len(answer.refused))


def _format_name(value: int) -> str:
    try:
        return pb.PayloadFormat.Name(value)
    except ValueError:
        return str(value)


async def _drain(request_iterator) -> None:
    """What the client sends until it ends its side of the stream, dropped unread, within
    ``DRAIN_S`` and ``DRAIN_ITEMS``: a client that has written everything when the status comes
    gets that status, not its library's INTERNAL for a write into an ended stream."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_S
    try:
        for _ in range(DRAIN_ITEMS):
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.wait_for(request_iterator.__anext__(), left)
    except (StopAsyncIteration, TimeoutError, DecodeError, grpc.aio.AioRpcError):
        return
