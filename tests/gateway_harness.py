"""An in-process gateway on an ephemeral port, its clients, certificates and test doubles.

Shared by the gateway's unit tests (with the in-memory publisher and log below) and its
integration tests (with the real Kafka publisher and reader).
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from services.common import kafka_io, topics
from services.common.avro import codec
from services.gateway import cursor
from services.gateway.client import Credentials, GatewayClient
from services.gateway.client_registry import add_client
from services.gateway.delivered import MemoryDelivered, member
from services.gateway.fanout import FanoutReader
from services.gateway.kafka_bridge import KafkaPublisher, LogRecord, StreamStats, TopicReader
from services.gateway.server import GatewayServer, ServerSettings, build_gateway

PLATFORM, PAYER, CARRIER, AGENT, MERCHANT = ("91330106MA27XK5W3B", "91310000MA1FL3PA4T", "91310000MA1GLX0073",
                                             "91330106MA28BG4T1M", "91330106MA2H3D7P5N")


def settings(tmp_path: Path, **overrides) -> ServerSettings:
    base = dataclasses.replace(ServerSettings.from_env(), listen="127.0.0.1:0", clients_file=tmp_path / "clients.json",
                               tls_cert="", tls_key="", client_ca="", metrics_port=0,
                               require_signature="none")  # signature tests ask for it (test_gateway_signatures)
    return dataclasses.replace(base, **overrides)


def register(path: Path, *specs: tuple[str, str, list[str]]) -> dict[str, str]:
    """Clients (id, role, codes) in the clients file; returns their tokens by id."""
    return {client_id: add_client(path, client_id, role, codes) for client_id, role, codes in specs}


@dataclasses.dataclass
class Running:
    server: GatewayServer
    port: int

    @property
    def gateway(self):
        return self.server.gateway

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, token: str, channel_options: tuple = (), **tls) -> GatewayClient:
        return GatewayClient(Credentials(address=tls.pop("address", self.address), token=token, **tls),
                             channel_options=channel_options)


def delivered(*declaration_ids: str) -> MemoryDelivered:
    """An index of delivered declarations holding ``declaration_ids`` (so customs may report on them)."""
    index = MemoryDelivered()
    index.members.update(member(d) for d in declaration_ids)
    return index


@asynccontextmanager
async def running_gateway(server_settings: ServerSettings, publisher, reader,
                          delivered_index: MemoryDelivered | None = None, signer=None) -> AsyncIterator[Running]:
    server = GatewayServer(server_settings, build_gateway(server_settings, publisher, reader, delivered_index,
                                                          signer=signer))
    port = await server.start()
    try:
        yield Running(server, port)
    finally:
        await server.stop(0.5)


_test_numbers = itertools.count(1)


@pytest.fixture
def gateway_topics(stack, topic_prefix, monkeypatch) -> str:
    """Fresh topics for one test (its own prefix), so streams read only what the test wrote."""
    prefix = f"{topic_prefix}gw{next(_test_numbers)}-"
    monkeypatch.setenv("SANDAN_TOPIC_PREFIX", prefix)
    kafka_io.create_topics()
    return prefix


@asynccontextmanager
async def kafka_gateway(server_settings: ServerSettings, delivered_index: MemoryDelivered | None = None,
                        consumer_factory=None, signer=None) -> AsyncIterator[Running]:
    """An in-process gateway on the real Kafka (its streams' consumers from ``consumer_factory`` if given)."""
    publisher = KafkaPublisher(kafka_io.bootstrap())
    await publisher.start()
    reader = FanoutReader(TopicReader(kafka_io.bootstrap(), server_settings.stream_batch, server_settings.fetch_bytes,
                                      consumer_factory))
    try:
        async with running_gateway(server_settings, publisher, reader, delivered_index, signer) as gw:
            yield gw
    finally:
        await reader.close()
        await publisher.stop()


def produce(short_topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = kafka_io.producer()
    for key, value in records:
        producer.send(topics.name(short_topic), key=key, value=value)
    producer.flush()
    producer.close()


class MemoryPublisher:
    """Keeps what it is asked to publish; ``hold`` makes it wait until released."""

    def __init__(self) -> None:
        self.outputs = []
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def publish(self, outputs) -> None:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        self.outputs.extend(outputs)

    def on(self, topic: str) -> list:
        return [o for o in self.outputs if o.topic == topic]


class MemoryLog:
    """A topic log in memory with the reader's contract: positions, cursors, stop, batches."""

    def __init__(self, partitions: int = 2) -> None:
        self.partitions: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(partitions)}
        self.topic = ""
        self.grown = asyncio.Event()
        self._loop = None

    def append(self, partition: int, key: bytes, value: bytes) -> None:
        self.partitions[partition].append((key, value))
        self.grown.set()

    async def read(self, short_topic: str, positions, latest: bool, stop: asyncio.Event, stats: StreamStats,
                   on_lag) -> AsyncIterator[list[LogRecord]]:
        cursor.check_within(positions or {}, {p: len(log) for p, log in self.partitions.items()}, short_topic)
        if self._loop is not asyncio.get_running_loop():  # a log kept across asyncio.run calls: a fresh event
            self.grown, self._loop = asyncio.Event(), asyncio.get_running_loop()
        at = {p: (positions or {}).get(p, len(log) if latest else 0) for p, log in self.partitions.items()}
        while not stop.is_set():
            progressed = False
            for p, log in self.partitions.items():
                taken = []
                while at[p] < len(log) and len(taken) < 3:  # small lists: batches of several partitions' reads
                    key, value = log[at[p]]
                    at[p] += 1
                    taken.append(LogRecord(p, at[p] - 1, key, value, cursor.encode(short_topic, at)))
                if taken:
                    stats.taken += len(taken)
                    progressed = True
                    yield taken
            on_lag(0)
            if not progressed:
                self.grown.clear()
                try:
                    await asyncio.wait_for(self.grown.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass


def verdict_record(n: int, ebp_code: str = PLATFORM, inventory: dict | None = None) -> dict:
    return {"declarationId": f"{ebp_code}:ORD{n:06d}", "ebpCode": ebp_code, "orderNo": f"ORD{n:06d}",
            "status": "verified", "taxTotal": 0, "assureCode": ebp_code, "inventory": inventory,
            "lastDocumentAt": 1_700_000_000_000 + n, "decidedAt": 1_700_000_000_000 + n}


def verdict_bytes(n: int, **kw) -> bytes:
    return codec().encode("sandan.Verdict", verdict_record(n, **kw))


def receipt_bytes(n: int, receiver: str) -> bytes:
    return codec().encode("sandan.Receipt", {
        "guid": f"R{n:035d}", "message": "CEB312", "receiver": receiver, "documentGuid": f"D{n:035d}",
        "orderNo": f"ORD{n:06d}", "returnStatus": "120", "returnTime": "20250303120000000",
        "returnInfo": "verified", "failures": []})


def cleared_topic() -> str:
    return topics.name("declarations.cleared")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path, client_ids: list[str]) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and one client certificate per id (CN = id)."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=sandan test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    names = {"ca": folder / "ca.pem"}
    for name, subject, extension in [("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost")] + [
            (cid, f"/CN={cid}", f"subjectAltName=DNS:{cid}") for cid in client_ids]:
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
                "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=folder)
        (folder / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=folder)
        names[name] = folder / f"{name}.pem"
        names[f"{name}.key"] = folder / f"{name}.key"
    return names
