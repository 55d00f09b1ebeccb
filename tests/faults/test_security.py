"""Security (issue 9, §3): nothing leaks into logs, the gateway refuses what DOMAIN §6
forbids, TLS is what it claims, and the stack listens on loopback only.

Runs last in the session (conftest orders it so): the log scans cover every scenario the
session ran, besides a demo run of their own.
"""
from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from services.common import config, kafka_io, topics
from services.tools import generator as gen
from services.common.avro import codec
from services.common.ceb.writer import write_message
from services.common.pii import PERSONAL_FIELDS
from services.demo import runner
from services.demo.processes import ServiceProcess
from services.gateway.client import Credentials, GatewayClient, xml_item
from services.gateway.client_registry import add_client
from tests.faults.conftest import SEED
from tests.faults.pipeline import RUNS, environment
from tests.gateway_harness import make_certificates, receipt_bytes, verdict_bytes
from tests.integration.workers import with_prefix

SETS = gen.generate(12, fault_share=0, seed=31)
A_CODES = [SETS[0].order["ebpCode"]]
A_ORDERS = [s.order for s in SETS if s.order["ebpCode"] in A_CODES]
B_ORDERS = [s.order for s in SETS if s.order["ebpCode"] not in A_CODES]
# A token is `<client id>.<256 random bits>` (services/gateway/client_registry.py); the demo's clients are these two.
DEMO_TOKEN = re.compile(r"demo-(parties|customs)\.[A-Za-z0-9_-]{43}")


# --- what logs must never hold ------------------------------------------------------------

def personal_values(docs) -> set[str]:
    """Every personal value of the documents long enough to be told apart from other text."""
    values = set()
    for doc in docs:
        for name in PERSONAL_FIELDS:
            value = str(doc.get(name) or "").strip()
            if len(value) >= 2:
                values.add(value)
    return values


def leaks(files: list[Path], secrets: set[str]) -> list[str]:
    """Each secret found in a file, as its file and first characters. One pass of a regex made
    from the secrets' trie per file: a scenario at load has ~30,000 personal values, and a
    substring search for each over every log took seconds per megabyte."""
    if not secrets:
        return []
    pattern = _trie_pattern(secrets)
    found = []
    for path in files:
        text = path.read_text(errors="replace") if path.exists() else ""
        hits = {m.group() for m in pattern.finditer(text)}
        # a secret inside a longer match is found by its own search in that match
        found += [f"{path.name}: {secret[:3]}…" for secret in sorted(secrets) if any(secret in hit for hit in hits)]
    return found


def _trie_pattern(words: set[str]) -> re.Pattern:
    """A regex matching any of ``words``, longest first at each position (a trie as nested groups)."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return re.compile(build(trie))


def test_no_log_holds_a_buyer_id_number_other_personal_data_or_a_token(private, topic_prefix, tmp_path):
    """A demo run's logs and output, and the logs of every scenario the session ran before
    (crashes, restarts, outages and wipes log the most)."""
    count = 12  # small, so the demo is quick; it still verifies, refuses, cancels and returns some
    env = dict(os.environ, SANDAN_LOCAL_DIR=str(tmp_path), SANDAN_LOG_LEVEL="INFO")
    env.pop("SANDAN_TOPIC_PREFIX", None)  # the demo chooses its own prefix
    done = subprocess.run([sys.executable, "-m", "services.cli", "demo", "--count", str(count), "--seed", str(SEED)],
                          env=env, capture_output=True, text=True, cwd=config.PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    _, docs, _ = runner.build_documents(runner.DemoPlan(count=count, seed=SEED))
    ids = {d[f] for d in docs for f in ("buyerIdNumber", "payerIdNumber") if d.get(f)}
    (tmp_path / "demo.out").write_text(done.stdout + done.stderr)
    files = sorted(tmp_path.glob("demo/*/*.log")) + [tmp_path / "demo.out"]  # the services' logs (not RocksDB's)
    assert len(files) > 1 and ids, "the demo wrote no service logs, or submitted no ID numbers"
    assert not leaks(files, ids), "buyer ID numbers in the demo's logs"
    assert not leaks(files, personal_values(docs)), "personal data in the demo's logs"
    assert not [f.name for f in files if DEMO_TOKEN.search(f.read_text(errors="replace"))], "a token in the logs"
    found = [leak for run in RUNS for leak in leaks(run.logs, run.tokens | personal_values(run.documents))]
    assert not found, f"in the logs of the session's scenarios: {found[:20]}"


# --- the gateway process: roles (DOMAIN §6) ---------------------------------------------------

async def _mark_delivered(redis_url: str, declaration_ids: list[str]) -> None:
    import redis.asyncio as aioredis

    from services.gateway.delivered import RedisDelivered

    redis = aioredis.from_url(redis_url)
    try:
        await RedisDelivered(redis).add(declaration_ids)
    finally:
        await redis.aclose()


class GatewayProcess:
    """`sandan gateway serve` on the private stack, with its own clients and topics."""

    def __init__(self, prefix: str, run_dir: Path, **env: str) -> None:
        self.address = env.pop("SANDAN_GATEWAY_LISTEN", None) or f"127.0.0.1:{runner.free_port()}"
        self.clients = run_dir / "clients.json"
        self.prefix = prefix
        self.tokens = {"a": add_client(self.clients, "enterprise-a", "enterprise", A_CODES),
                       "b": add_client(self.clients, "enterprise-b", "enterprise",
                                       sorted({o["ebpCode"] for o in B_ORDERS})),
                       "customs": add_client(self.clients, "customs-1", "customs", [])}
        self.env = environment(prefix, run_dir, SANDAN_GATEWAY_LISTEN=self.address,
                               SANDAN_GATEWAY_CLIENTS=str(self.clients), **env)
        self.proc = ServiceProcess("gateway", ["gateway", "serve"], self.env, run_dir)

    def __enter__(self) -> "GatewayProcess":
        with with_prefix(self.prefix):
            kafka_io.create_topics()
            # customs may report only on what the gateway delivered: the order the Report calls name
            asyncio.run(_mark_delivered(self.env.get("SANDAN_REDIS_URL") or config.get("SANDAN_REDIS_URL"),
                                        [f"{A_ORDERS[0]['ebpCode']}:{A_ORDERS[0]['orderNo']}"]))
        self.proc.start()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stop()

    def client(self, who: str | None, token: str | None = None, **tls) -> GatewayClient:
        return GatewayClient(Credentials(self.address, token if token is not None else self.tokens.get(who, ""),
                                         **tls))


@pytest.fixture(scope="module")
def gateway(private, topic_prefix, tmp_path_factory):
    prefix = f"{topic_prefix}security-"
    with GatewayProcess(prefix, tmp_path_factory.mktemp("gateway")) as gw:
        asyncio.run(runner.wait_serving(gw.address, gw.proc))
        yield gw


async def status_of(awaitable) -> grpc.StatusCode:
    try:
        result = await awaitable
        if hasattr(result, "__aiter__"):
            [_ async for _ in result]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def call(gw: GatewayProcess, who: str | None, method: str, token: str | None = None) -> grpc.StatusCode:
    async def run():
        async with gw.client(who, token) as client:
            if method == "Submit":
                items = [xml_item(write_message("CEB311", A_ORDERS[:1]), "own")]
                return await status_of(_drain(client.submit(items, timeout=20)))
            if method == "Receipts":
                return await status_of(_drain(client.receipts(idle_timeout=1)))
            if method == "Subscribe":
                return await status_of(_drain(client.subscribe(idle_timeout=1)))
            return await status_of(client.report(ebp_code=A_ORDERS[0]["ebpCode"], order_no=A_ORDERS[0]["orderNo"],
                                                 status="120", timeout=20))
    return asyncio.run(run())


async def _drain(stream) -> list:
    return [m async for m in stream]


OK, DENIED, UNKNOWN = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("who, method, expected", [
    ("a", "Submit", OK), ("a", "Receipts", OK), ("a", "Subscribe", DENIED), ("a", "Report", DENIED),
    ("customs", "Submit", DENIED), ("customs", "Receipts", DENIED), ("customs", "Subscribe", OK),
    ("customs", "Report", OK),
    (None, "Submit", UNKNOWN), (None, "Subscribe", UNKNOWN), (None, "Report", UNKNOWN), (None, "Receipts", UNKNOWN),
])
def test_each_role_may_call_only_its_own_methods(gateway, who, method, expected):
    assert call(gateway, who, method) == expected


@pytest.mark.parametrize("forged", ["wrong", "customs-1.{secret}", "enterprise-a.{secret}x", "{a}{a}", " "])
def test_forged_tokens_are_refused_and_never_logged(gateway, forged):
    secret = gateway.tokens["a"].rpartition(".")[2]
    token = forged.format(secret=secret, a=gateway.tokens["a"])
    assert call(gateway, None, "Subscribe", token=token) == UNKNOWN
    time.sleep(0.2)  # the log line of the refusal
    assert not leaks([gateway.proc.log], {gateway.tokens["a"], secret} | ({token} if len(token) > 8 else set()))


def test_an_enterprise_may_not_submit_another_enterprises_documents_and_nothing_of_them_is_published(gateway):
    async def run():
        async with gateway.client("a") as client:
            items = [xml_item(write_message("CEB311", A_ORDERS[:1]), "own"),
                     xml_item(write_message("CEB311", B_ORDERS[:1]), "foreign")]
            return await status_of(_drain(client.submit(items, timeout=20)))

    assert asyncio.run(run()) == DENIED
    with with_prefix(gateway.prefix):
        published = {codec().decode(r.value)[1]["guid"] for r in kafka_io.read_all(topics.name("documents.order"))}
    assert B_ORDERS[0]["guid"] not in published


def test_an_enterprise_reads_only_the_receipts_addressed_to_it(gateway):
    with with_prefix(gateway.prefix):
        producer = kafka_io.producer()
        for n, receiver in enumerate([A_CODES[0], B_ORDERS[0]["ebpCode"]] * 3):
            producer.send(topics.name("receipts"), key=receiver.encode(), value=receipt_bytes(100 + n, receiver))
        producer.flush()
        producer.close()

    async def run(who):
        async with gateway.client(who) as client:
            return [r.receiver async for r in client.receipts(idle_timeout=3)]

    assert set(asyncio.run(run("a"))) == {A_CODES[0]}
    assert set(asyncio.run(run("b"))) == {B_ORDERS[0]["ebpCode"]}


def test_customs_reads_cleared_declarations_an_enterprise_may_not(gateway):
    with with_prefix(gateway.prefix):
        producer = kafka_io.producer()
        producer.send(topics.name("declarations.cleared"), key=b"ORD000900", value=verdict_bytes(900))
        producer.flush()
        producer.close()

    async def run():
        async with gateway.client("customs") as client:
            return [d.declaration_id async for d in client.subscribe(idle_timeout=3)]

    assert asyncio.run(run()) and call(gateway, "a", "Subscribe") == DENIED


# --- TLS ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"), ["customs-1", "enterprise-a"])


def handshake(address: str, ca: Path, **versions) -> str:
    """The TLS version a client with these limits agrees with the gateway on (or the error's name)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer old protocols: the server must refuse them
    for name, version in versions.items():
        setattr(context, name, version)
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.version()
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__


def test_the_gateway_speaks_tls_1_2_or_later_only_and_refuses_plaintext(private, topic_prefix, certs, tmp_path):
    tls = dict(SANDAN_GATEWAY_TLS_CERT=str(certs["server"]), SANDAN_GATEWAY_TLS_KEY=str(certs["server.key"]))
    with GatewayProcess(f"{topic_prefix}tls-", tmp_path, **tls) as gw:
        _wait_port(gw)
        secure = call_tls(gw, "customs", ca=str(certs["ca"]))
        plain = call(gw, "customs", "Report")
        other_ca = make_certificates(tmp_path / "other", [])["ca"]
        untrusted = call_tls(gw, "customs", ca=str(other_ca))
        modern = handshake(gw.address, certs["ca"])
        old = handshake(gw.address, certs["ca"], minimum_version=ssl.TLSVersion.TLSv1,
                        maximum_version=ssl.TLSVersion.TLSv1_1)
    assert secure == OK and plain == grpc.StatusCode.UNAVAILABLE and untrusted == grpc.StatusCode.UNAVAILABLE
    assert modern in ("TLSv1.2", "TLSv1.3")
    assert old not in ("TLSv1", "TLSv1.1"), f"the gateway agreed on {old}"


def test_mutual_tls_needs_the_clients_own_certificate(private, topic_prefix, certs, tmp_path):
    mtls = dict(SANDAN_GATEWAY_TLS_CERT=str(certs["server"]), SANDAN_GATEWAY_TLS_KEY=str(certs["server.key"]),
                SANDAN_GATEWAY_TLS_CLIENT_CA=str(certs["ca"]))
    with GatewayProcess(f"{topic_prefix}mtls-", tmp_path, **mtls) as gw:
        _wait_port(gw)
        own = call_tls(gw, "customs", ca=str(certs["ca"]), cert=str(certs["customs-1"]), key=str(certs["customs-1.key"]))
        borrowed = call_tls(gw, "customs", ca=str(certs["ca"]), cert=str(certs["enterprise-a"]),
                            key=str(certs["enterprise-a.key"]))
        none = call_tls(gw, "customs", ca=str(certs["ca"]))
    assert (own, borrowed, none) == (OK, UNKNOWN, grpc.StatusCode.UNAVAILABLE)


def call_tls(gw: GatewayProcess, who: str, **tls) -> grpc.StatusCode:
    async def run():
        async with gw.client(who, **tls) as client:
            return await status_of(client.report(ebp_code=A_ORDERS[0]["ebpCode"], order_no=A_ORDERS[0]["orderNo"],
                                                 status="120", timeout=10))
    return asyncio.run(run())


def _wait_port(gw: GatewayProcess, timeout_s: float = 60) -> None:
    host, _, port = gw.address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert gw.proc.alive(), f"the gateway did not start; see {gw.proc.log}"
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the gateway did not listen on {gw.address}")


def test_the_gateway_refuses_to_listen_off_loopback_without_tls(private, topic_prefix, tmp_path):
    gw = GatewayProcess(f"{topic_prefix}open-", tmp_path, SANDAN_GATEWAY_LISTEN=f"0.0.0.0:{runner.free_port()}")
    done = subprocess.run([sys.executable, "-m", "services.cli", "gateway", "serve"], env=gw.env, capture_output=True,
                          text=True, cwd=config.PROJECT_ROOT, timeout=60)
    assert done.returncode != 0 and "is not a loopback address" in done.stderr + done.stdout


# --- listeners ------------------------------------------------------------------------------

def listening() -> dict[int, set[str]]:
    """Port -> addresses a socket listens on (IPv4 and IPv6, from /proc/net)."""
    found: dict[int, set[str]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]  # kernel order per 32-bit word
            packed = b"".join(words)
            text = socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, packed)
            found.setdefault(int(port, 16), set()).add(text)
    return found


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def test_kafka_redis_and_the_services_listen_on_loopback_by_default(private, topic_prefix, tmp_path):
    ports = {name: int(private.env[name]) for name in ("SANDAN_KAFKA_PORT", "SANDAN_KAFKA_CONTROLLER_PORT",
                                                       "SANDAN_REDIS_PORT", "SANDAN_PROMETHEUS_PORT")
             if name in private.env}
    metrics_port = runner.free_port()
    default_host = config.get("SANDAN_GATEWAY_LISTEN").rpartition(":")[0]  # the setting's default (not overridden)
    gw = GatewayProcess(f"{topic_prefix}listen-", tmp_path, SANDAN_GATEWAY_METRICS_PORT=str(metrics_port),
                        SANDAN_GATEWAY_LISTEN=f"{default_host}:{runner.free_port()}")
    with gw:
        _wait_port(gw)
        time.sleep(0.5)
        sockets = listening()
    ports.update(gateway=int(gw.address.rsplit(":", 1)[1]), gateway_metrics=metrics_port)
    for name, port in ports.items():
        if name == "SANDAN_PROMETHEUS_PORT" and port not in sockets:
            continue  # a stack without Prometheus
        assert port in sockets, f"nothing listens on {name} {port}"
        assert all(is_loopback(a) for a in sockets[port]), f"{name} {port} listens on {sockets[port]}"
    redis_conf = (private.local_dir / "redis" / "redis.conf").read_text()
    kafka_conf = (private.local_dir / "kafka" / "server.properties").read_text()
    assert re.search(r"^bind 127\.0\.0\.1$", redis_conf, re.M) and "protected-mode yes" in redis_conf
    listeners = re.search(r"^listeners=(.*)$", kafka_conf, re.M).group(1)
    assert all("//127.0.0.1:" in listener for listener in listeners.split(","))
    defaults = {setting.env: setting.default for setting in config.SETTINGS}
    assert defaults["SANDAN_GATEWAY_LISTEN"].startswith("127.0.0.1:")
    assert defaults.get("SANDAN_METRICS_HOST", "127.0.0.1") == "127.0.0.1"
