"""The gateway process: a grpc.aio server with health, reflection, TLS and graceful stop.

Not a stream worker: it owns one idempotent aiokafka producer for everything it accepts
and group-less consumers for the streams: one shared per topic of cleared declarations
(``fanout.py``), one per stream that catches up or reads receipts.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiokafka.errors import KafkaError as AioKafkaError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from kafka.errors import KafkaError as SyncKafkaError

from services.common import config, garbage_collector, kafka_io, kafka_security, redis_client
from services.common import metrics as common_metrics
from services.common.signing import own_identity
from services.gateway import deadletter_watch, metrics, reflection
from services.gateway.client_registry import ClientRegistry
from services.gateway.delivered import DeliveredIndex, RedisDelivered
from services.gateway.fanout import FanoutReader
from services.gateway.kafka_bridge import KafkaPublisher, TopicReader
from services.gateway.proto import gateway_pb2 as pb
from services.gateway.proto import gateway_pb2_grpc as pb_grpc
from services.gateway.ratelimit import RateLimiter
from services.gateway.service import Gateway
from services.gateway.certificates import CertificateFollower
from services.gateway.signatures import SignaturePolicy, required_types
from services.gateway.receipt_envelopes import ReceiptSigner

log = logging.getLogger("sandan.gateway")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gateway"].full_name
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class ServerSettings:
    listen: str
    clients_file: Path
    tls_cert: str
    tls_key: str
    client_ca: str
    max_message_bytes: int
    rate: int
    burst: int
    stream_batch: int
    fetch_bytes: int
    grace: int
    metrics_port: int
    share_port: bool = False
    auth_recheck_s: float = 2.0
    max_streams_per_client: int = 16
    report_skew_s: int = 300
    require_signature: str = "default"  # SANDAN_REQUIRE_SIGNATURE

    @classmethod
    def from_env(cls) -> "ServerSettings":
        clients = config.get("SANDAN_GATEWAY_CLIENTS") or str(Path(config.get("SANDAN_LOCAL_DIR")) / "gateway" /
                                                              "clients.json")
        return cls(listen=config.get("SANDAN_GATEWAY_LISTEN"), clients_file=Path(clients),
                   tls_cert=config.get("SANDAN_GATEWAY_TLS_CERT"), tls_key=config.get("SANDAN_GATEWAY_TLS_KEY"),
                   client_ca=config.get("SANDAN_GATEWAY_TLS_CLIENT_CA"),
                   max_message_bytes=config.get_int("SANDAN_GATEWAY_MAX_MESSAGE_BYTES"),
                   rate=config.get_int("SANDAN_GATEWAY_RATE"), burst=config.get_int("SANDAN_GATEWAY_BURST"),
                   stream_batch=config.get_int("SANDAN_GATEWAY_STREAM_BATCH"),
                   fetch_bytes=config.get_int("SANDAN_GATEWAY_FETCH_BYTES"),
                   grace=config.get_int("SANDAN_GATEWAY_GRACE"),
                   metrics_port=config.get_int("SANDAN_GATEWAY_METRICS_PORT"),
                   share_port=config.get_int("SANDAN_GATEWAY_SHARE_PORT") != 0,
                   auth_recheck_s=config.get_int("SANDAN_GATEWAY_AUTH_RECHECK_SECONDS"),
                   max_streams_per_client=config.get_int("SANDAN_GATEWAY_MAX_STREAMS_PER_CLIENT"),
                   report_skew_s=config.get_int("SANDAN_GATEWAY_REPORT_SKEW_SECONDS"),
                   require_signature=config.get("SANDAN_REQUIRE_SIGNATURE"))

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert or self.tls_key)


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured; client certificates when a client CA is."""
    if not settings.tls:
        if settings.client_ca:
            raise SystemExit("SANDAN_GATEWAY_TLS_CLIENT_CA needs SANDAN_GATEWAY_TLS_CERT and _KEY (mTLS is TLS)")
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise SystemExit("TLS needs both SANDAN_GATEWAY_TLS_CERT and SANDAN_GATEWAY_TLS_KEY")
    client_ca = _read(settings.client_ca) if settings.client_ca else None
    key, cert = _read(settings.tls_key), _read(settings.tls_cert)
    check_key_pair(settings.tls_cert, settings.tls_key)
    return grpc.ssl_server_credentials([(key, cert)],
                                       root_certificates=client_ca, require_client_auth=client_ca is not None)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc.strerror or exc}") from None


def check_key_pair(cert_path: str, key_path: str) -> None:
    """Refuse a key that is not the certificate's: gRPC would only say "Failed to bind to address"."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        problem = "is not the key of" if "KEY_VALUES_MISMATCH" in str(exc) else f"and {cert_path} cannot be used with"
        raise SystemExit(f"SANDAN_GATEWAY_TLS_KEY {key_path} {problem} SANDAN_GATEWAY_TLS_CERT {cert_path} "
                         f"({exc.reason or exc})") from None


def check_listen(settings: ServerSettings) -> None:
    """Tokens must not cross a network in clear text: off loopback, TLS is required."""
    host = settings.listen.rpartition(":")[0]
    if host not in _LOOPBACK and not settings.tls:
        raise SystemExit(f"SANDAN_GATEWAY_LISTEN={settings.listen} is not a loopback address: set "
                         f"SANDAN_GATEWAY_TLS_CERT and SANDAN_GATEWAY_TLS_KEY")


class GatewayServer:
    """One grpc.aio server around a ``Gateway``; ``start`` returns the bound port (0 picks one)."""

    def __init__(self, settings: ServerSettings, gateway: Gateway) -> None:
        self.settings, self.gateway = settings, gateway
        self.watcher: asyncio.Future | None = None
        self.health = health.aio.HealthServicer()
        limit = settings.max_message_bytes
        # grpc turns SO_REUSEPORT on by default: a second gateway would silently share the port.
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                               ("grpc.max_send_message_length", limit),
                                               ("grpc.so_reuseport", int(settings.share_port))])
        pb_grpc.add_GatewayServicer_to_server(gateway, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable(self.server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))

    async def start(self) -> int:
        credentials = server_credentials(self.settings)
        try:
            if credentials is None:
                port = self.server.add_insecure_port(self.settings.listen)
            else:
                port = self.server.add_secure_port(self.settings.listen, credentials)
        except RuntimeError:
            raise SystemExit(f"cannot listen on {self.settings.listen}: the address is in use or not this host's "
                             f"(another gateway? set SANDAN_GATEWAY_SHARE_PORT=1 to share a port on purpose)") from None
        await self.server.start()
        self.watcher = asyncio.ensure_future(self.gateway.watch_credentials())
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let streams answer what they hold, then close (cancelling after ``grace``)."""
        await self.health.enter_graceful_shutdown()
        self.gateway.begin_shutdown()
        await self.server.stop(self.settings.grace if grace is None else grace)
        if self.watcher is not None:
            self.watcher.cancel()


def signature_policy(settings: ServerSettings) -> SignaturePolicy:
    try:
        return SignaturePolicy(required_types(settings.require_signature))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def receipt_signer() -> tuple[ReceiptSigner, str]:
    """sandan's own identity (SANDAN_SIGNING_KEY/_CERT, or the generated one) and node id, checked
    at start: a gateway that could not sign its XML receipts does not start. With it, where the
    identity came from (said once the gateway has started)."""
    try:
        identity = own_identity.load()
        signer = ReceiptSigner(identity.key, identity.certificate, config.get("SANDAN_DXP_NODE_ID"))
    except own_identity.IdentityError as exc:
        raise SystemExit(str(exc)) from None
    except ValueError as exc:
        raise SystemExit(f"setting SANDAN_DXP_NODE_ID: {exc}") from None
    return signer, str(identity.source)


def build_gateway(settings: ServerSettings, publisher, reader, delivered: DeliveredIndex | None = None,
                  signatures: SignaturePolicy | None = None, signer: ReceiptSigner | None = None) -> Gateway:
    """``delivered`` None: an index in memory (tests); ``serve`` keeps it in Redis. ``signatures``
    None: the policy of ``settings`` with an empty certificate book (tests fill it). ``signer``
    None: XML receipts without their signed envelope."""
    return Gateway(registry=ClientRegistry(settings.clients_file), publisher=publisher, reader=reader,
                   limiter=RateLimiter(settings.rate, settings.burst), metrics=metrics.gateway(),
                   mutual_tls=bool(settings.client_ca), recheck_s=settings.auth_recheck_s,
                   max_streams_per_client=settings.max_streams_per_client, delivered=delivered,
                   report_skew_ms=settings.report_skew_s * 1000,
                   signatures=signatures if signatures is not None else signature_policy(settings),
                   receipt_signer=signer)


async def serve(settings: ServerSettings) -> None:
    """``sandan gateway serve``: run until SIGINT/SIGTERM, then stop gracefully."""
    check_listen(settings)
    server_credentials(settings)  # fail on bad TLS files before touching Kafka
    signer, signer_source = receipt_signer()  # and on a signing identity that cannot be used
    kafka_security.settings()  # and on Kafka security settings that cannot work together
    bootstrap = kafka_io.bootstrap()
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # its retry chatter would bury the one line that says what is wrong
    try:
        await asyncio.to_thread(kafka_io.create_topics)
    except kafka_io.KafkaSecurityError as exc:
        raise SystemExit(f"gateway: {exc}") from None
    except SyncKafkaError as exc:
        raise SystemExit(f"Kafka at {bootstrap} (SANDAN_KAFKA_BOOTSTRAP) is unreachable: {type(exc).__name__}") from None
    finally:
        kafka_log.setLevel(level)
    try:
        common_metrics.serve(settings.metrics_port)
    except OSError as exc:
        raise SystemExit(f"cannot serve metrics on port {settings.metrics_port} (SANDAN_GATEWAY_METRICS_PORT): "
                         f"{exc.strerror or exc}") from None
    publisher = KafkaPublisher(bootstrap)
    try:
        await publisher.start()
    except AioKafkaError as exc:
        reason = await asyncio.to_thread(kafka_security.explain, bootstrap)
        raise SystemExit(f"gateway: {reason}" if reason else
                         f"Kafka at {bootstrap} (SANDAN_KAFKA_BOOTSTRAP) is unreachable: {type(exc).__name__}") from None
    redis = redis_client.connect()
    reader = FanoutReader(TopicReader(bootstrap, settings.stream_batch, settings.fetch_bytes))
    signatures = signature_policy(settings)
    signatures.ready.clear()  # until the follower has read the registry
    server = GatewayServer(settings, build_gateway(settings, publisher, reader, RedisDelivered(redis), signatures,
                                                   signer))
    garbage_collector.tune()
    registry_stop = asyncio.Event()
    registry = asyncio.create_task(CertificateFollower(bootstrap, signatures.book, signatures.ready).run(registry_stop))
    try:
        port = await server.start()
        if not settings.clients_file.exists():
            log.warning("no clients file at %s: every call will be refused (see `sandan gateway add-client`)",
                        settings.clients_file)
        log.info("gateway listening on %s (port %d, %s)", settings.listen, port,
                 "mTLS" if settings.client_ca else "TLS" if settings.tls else "plaintext, loopback only")
        # said once started: a start that fails prints its one line only
        log.info("XML receipts are signed in their envelope with certificate %s (%s)", signer.certificate.number,
                 signer_source)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(deadletter_watch.watch(
            lambda: kafka_io.consumer(group_id=None, client_id="sandan-deadletter-watch"),
            config.get_int("SANDAN_GATEWAY_DEADLETTER_POLL_SECONDS"), stop))
        await stop.wait()
        await watcher
        registry_stop.set()
        await registry
        log.info("gateway stopping: finishing in-flight calls (up to %d s)", settings.grace)
        await server.stop()
    finally:
        await reader.close()
        await publisher.stop()
        await redis.aclose()
    log.info("gateway stopped")
