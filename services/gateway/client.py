"""A small async Python client of the gateway, for the CLI, the demo and enterprises' scripts.

    async with GatewayClient(Credentials.from_env()) as gw:
        for path, answer in await gw.submit_files(["orders/"]):
            print(path, answer.outcome)
        async for declaration in gw.subscribe(limit=10, idle_timeout=5):
            print(declaration.declaration_id, declaration.cursor)
"""
from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from services.common import config
from services.gateway.proto import gateway_pb2 as pb
from services.gateway.proto import gateway_pb2_grpc as pb_grpc

_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(CEB\d{3})Message[\s>/]")
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class Credentials:
    address: str
    token: str
    ca: str = ""    # PEM file of the CA that signed the gateway's certificate (TLS when set)
    cert: str = ""  # PEM client certificate and key, for mutual TLS
    key: str = ""

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Credentials":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{k: str(raw.get(k) or "") for k in ("address", "token", "ca", "cert", "key")})

    @classmethod
    def from_env(cls, path: str | os.PathLike | None = None) -> "Credentials":
        """A credentials file (``path`` or SANDAN_GATEWAY_CREDENTIALS), else the separate settings."""
        path = path or config.get("SANDAN_GATEWAY_CREDENTIALS")
        if path:
            return cls.from_file(path)
        return cls(address=config.get("SANDAN_GATEWAY_ADDRESS"), token=config.get("SANDAN_GATEWAY_TOKEN"),
                   ca=config.get("SANDAN_GATEWAY_CA"), cert=config.get("SANDAN_GATEWAY_CLIENT_CERT"),
                   key=config.get("SANDAN_GATEWAY_CLIENT_KEY"))

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON readable by the owner only (it holds the token)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.write("\n")


def message_type_of(payload: bytes) -> str:
    """``"CEB311"`` from the root element of a CEB XML message ("" when none is found)."""
    found = _ROOT.search(payload[:_SNIFF_BYTES])
    return found.group(1).decode() if found else ""


def xml_item(payload: bytes, item_id: str = "") -> pb.SubmitItem:
    return pb.SubmitItem(item_id=item_id, message_type=message_type_of(payload), format=pb.CEB_XML, payload=payload)


def avro_item(payload: bytes, message_type: str, item_id: str = "") -> pb.SubmitItem:
    return pb.SubmitItem(item_id=item_id, message_type=message_type, format=pb.AVRO, payload=payload)


async def _write_all(call, items) -> None:
    """``items`` onto the Submit stream, then its end; a stream that ended stops the writing (its
    status is what the reads raise)."""
    try:
        if hasattr(items, "__aiter__"):
            async for item in items:
                await call.write(item)
        else:
            for item in items:
                await call.write(item)
        await call.done_writing()
    except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
        pass


def _channel(credentials: Credentials, max_message_bytes: int, extra_options) -> grpc.aio.Channel:
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes), *extra_options]
    if not credentials.ca:
        return grpc.aio.insecure_channel(credentials.address, options=options)
    tls = grpc.ssl_channel_credentials(
        root_certificates=Path(credentials.ca).read_bytes(),
        private_key=Path(credentials.key).read_bytes() if credentials.key else None,
        certificate_chain=Path(credentials.cert).read_bytes() if credentials.cert else None)
    return grpc.aio.secure_channel(credentials.address, tls, options=options)


class GatewayClient:
    def __init__(self, credentials: Credentials, *, max_message_bytes: int | None = None,
                 channel_options: tuple = ()) -> None:
        limit = max_message_bytes or config.get_int("SANDAN_GATEWAY_MAX_MESSAGE_BYTES")
        self.channel = _channel(credentials, limit, channel_options)
        self.stub = pb_grpc.GatewayStub(self.channel)
        self.metadata = (("authorization", f"Bearer {credentials.token}"),)

    async def __aenter__(self) -> "GatewayClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    # --- enterprise -----------------------------------------------------------------------

    async def submit(self, items, *, timeout: float | None = None) -> AsyncIterator[pb.SubmitAnswer]:
        """The bidirectional call: ``items`` (iterable or async iterable of SubmitItem) → answers.

        Nothing is written before the gateway has accepted the call (its headers, sent once the
        client's credentials hold): a refusal then comes with its own status. grpcio's asyncio
        client reports a write that meets a stream the server already ended as INTERNAL,
        overwriting the server's status (grpc/grpc#36066), which made UNAUTHENTICATED and
        PERMISSION_DENIED look like gateway failures."""
        call = self.stub.Submit(metadata=self.metadata, timeout=timeout)
        await call.initial_metadata()
        writer = None if call.done() else asyncio.create_task(_write_all(call, items))
        try:
            async for answer in call:
                yield answer
        finally:
            if writer is not None and not writer.done():
                writer.cancel()
            if not call.done():
                call.cancel()

    async def submit_files(self, paths: Iterable[str | os.PathLike]) -> list[tuple[Path, pb.SubmitAnswer]]:
        """Every file on one Submit stream; answers paired with their files, in order."""
        files = [Path(p) for p in paths]
        items = (xml_item(path.read_bytes(), item_id=str(path)) for path in files)
        answers = [answer async for answer in self.submit(items)]
        return list(zip(files, answers))

    def receipts(self, cursor: str = "", *, latest: bool = False, limit: int | None = None,
                 idle_timeout: float | None = None, xml: bool = False) -> AsyncIterator[pb.ReceiptRecord]:
        """Receipts after ``cursor``, one record each, or with ``xml`` the standard's receipt
        messages (each record's ``xml``; ``limit`` then counts messages)."""
        request = pb.ReceiptsRequest(cursor=cursor, start=_start(latest), format=pb.CEB_XML if xml else pb.AVRO)
        call = self.stub.Receipts(request, metadata=self.metadata)
        return _bounded(call, limit, idle_timeout)

    # --- customs --------------------------------------------------------------------------

    def subscribe(self, cursor: str = "", *, latest: bool = False, limit: int | None = None,
                  idle_timeout: float | None = None) -> AsyncIterator[pb.ClearedDeclaration]:
        """Cleared declarations after ``cursor``; ends after ``limit`` or ``idle_timeout`` s of silence."""
        call = self.stub.Subscribe(pb.SubscribeRequest(cursor=cursor, start=_start(latest)), metadata=self.metadata)
        return _bounded(call, limit, idle_timeout)

    def subscribe_batches(self, cursor: str = "", *, latest: bool = False, limit: int | None = None,
                          idle_timeout: float | None = None) -> AsyncIterator[pb.ClearedBatch]:
        """As ``subscribe``, several declarations to a message (``limit`` counts messages)."""
        call = self.stub.SubscribeBatches(pb.SubscribeRequest(cursor=cursor, start=_start(latest)),
                                          metadata=self.metadata)
        return _bounded(call, limit, idle_timeout)

    def paydata_checks(self, cursor: str = "", *, latest: bool = False, limit: int | None = None,
                       idle_timeout: float | None = None) -> AsyncIterator[pb.PaydataCheck]:
        """Payment-data check outcomes (179) after ``cursor``; ends as ``subscribe`` does."""
        call = self.stub.PaydataChecks(pb.SubscribeRequest(cursor=cursor, start=_start(latest)), metadata=self.metadata)
        return _bounded(call, limit, idle_timeout)

    async def report(self, *, ebp_code: str, order_no: str, status: str, invt_no: str = "", reason: str = "",
                     decided_at: str = "", report_id: str = "", timeout: float | None = 30) -> pb.ReportAck:
        request = pb.ReportRequest(report_id=report_id, ebp_code=ebp_code, order_no=order_no, invt_no=invt_no,
                                   status=status, reason=reason, decided_at=decided_at)
        return await self.stub.Report(request, metadata=self.metadata, timeout=timeout)


def _start(latest: bool) -> int:
    return pb.START_LATEST if latest else pb.START_EARLIEST


async def _bounded(call, limit: int | None, idle_timeout: float | None):
    """A server stream's messages, until ``limit`` of them or ``idle_timeout`` seconds without one."""
    taken = 0
    try:
        while limit is None or taken < limit:
            try:
                # asyncio.timeout, not wait_for: wait_for wraps every read in a task of its own,
                # which cost a subscriber more CPU than the message (bench/RESULTS.md)
                async with asyncio.timeout(idle_timeout):
                    message = await call.read()
            except TimeoutError:
                return
            if message is grpc.aio.EOF:
                return
            taken += 1
            yield message
    finally:
        call.cancel()
