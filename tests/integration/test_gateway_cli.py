"""`sandan gateway ...` end to end: a real `serve` process, clients added and called from the CLI."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import config
from services.common.ceb.writer import write_message
from services.demo.ports import free_port
from services.tools.generator import generate
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import produce, receipt_bytes, verdict_bytes

pytestmark = pytest.mark.integration


def sandan(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", "gateway", *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=config.PROJECT_ROOT)


def wait_until_serving(address: str, server: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, f"gateway exited: {log.read_text()}"
        with grpc.insecure_channel(address) as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"gateway did not come up: {log.read_text()}")


def test_serve_submit_subscribe_report_receipts_from_the_command_line(gateway_topics, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, SANDAN_GATEWAY_LISTEN=address, SANDAN_GATEWAY_ADDRESS=address,
               SANDAN_GATEWAY_CLIENTS=str(tmp_path / "clients.json"), SANDAN_GATEWAY_METRICS_PORT="0",
               SANDAN_GATEWAY_GRACE="5", PYTHONPATH=str(config.PROJECT_ROOT))
    s = generate(1, fault_share=0, seed=3)[0]
    platform = s.order["ebpCode"]
    for client_id, role, codes in (("platform", "enterprise", [platform]), ("customs", "customs", [])):
        added = sandan("add-client", "--id", client_id, "--role", role, *[a for c in codes for a in ("--code", c)],
                       "--credentials-out", str(tmp_path / f"{client_id}.json"), env=env)
        assert added.returncode == 0, added.stderr
    token = json.loads((tmp_path / "platform.json").read_text())["token"]
    assert token not in (tmp_path / "clients.json").read_text()

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_order.xml").write_bytes(write_message("CEB311", [s.order]))
    (docs / "b_broken.xml").write_bytes(b"<ceb:CEB311Message")
    produce("declarations.cleared", [(s.order["orderNo"].encode(), verdict_bytes(1, ebp_code=platform))])
    produce("receipts", [(platform.encode(), receipt_bytes(1, platform))])

    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "services.cli", "gateway", "serve"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=config.PROJECT_ROOT)
    try:
        wait_until_serving(address, server, log)
        as_platform = dict(env, SANDAN_GATEWAY_CREDENTIALS=str(tmp_path / "platform.json"))
        as_customs = dict(env, SANDAN_GATEWAY_CREDENTIALS=str(tmp_path / "customs.json"))

        submitted = sandan("submit", str(docs), env=as_platform)
        assert submitted.returncode == 1  # something was refused
        lines = submitted.stdout.splitlines()
        assert lines[0].startswith("accepted") and "a_order.xml: 1 accepted" in lines[0]
        assert lines[1].startswith("refused") and "b_broken.xml" in lines[1]
        assert lines[-1] == "2 items (accepted 1, refused 1); documents accepted 1, refused 1"

        subscribed = sandan("subscribe", "--limit", "1", env=as_customs)
        assert subscribed.returncode == 0, subscribed.stderr
        declaration = json.loads(subscribed.stdout)
        assert declaration["declarationId"] == f"{platform}:ORD000001" and declaration["cursor"]
        resumed = sandan("subscribe", "--from", declaration["cursor"], "--idle-timeout", "1", env=as_customs)
        assert (resumed.returncode, resumed.stdout) == (0, "")

        reported = sandan("report", "--ebp-code", platform, "--order-no", "ORD000001", "--status", "800",
                          "--release-time", "20250303120000", env=as_customs)
        assert reported.returncode == 0 and f"{platform}:ORD000001:800" in reported.stdout

        receipts = sandan("receipts", "--limit", "1", env=as_platform)
        assert json.loads(receipts.stdout)["receiver"] == platform

        denied = sandan("subscribe", "--limit", "1", env=as_platform)
        assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0
    assert "gateway stopped" in log.read_text()
    assert token not in log.read_text()


def _serve_once(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", "gateway", "serve"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=config.PROJECT_ROOT)


def test_serve_with_its_metrics_port_in_use_exits_with_one_line(stack, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, SANDAN_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}", SANDAN_GATEWAY_METRICS_PORT=str(port),
                   SANDAN_GATEWAY_CLIENTS=str(tmp_path / "clients.json"), PYTHONPATH=str(config.PROJECT_ROOT))
        served = _serve_once(env)
    assert served.returncode != 0
    assert served.stderr.splitlines() == [
        f"cannot serve metrics on port {port} (SANDAN_GATEWAY_METRICS_PORT): Address already in use"]


def test_serve_without_kafka_exits_with_one_line(tmp_path):
    nobody = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, SANDAN_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}", SANDAN_KAFKA_BOOTSTRAP=nobody,
               SANDAN_KAFKA_CONNECT_TIMEOUT="1", SANDAN_GATEWAY_METRICS_PORT="0",
               SANDAN_GATEWAY_CLIENTS=str(tmp_path / "clients.json"), PYTHONPATH=str(config.PROJECT_ROOT))
    served = _serve_once(env)
    assert served.returncode != 0
    [line] = served.stderr.splitlines()
    assert line.startswith(f"Kafka at {nobody} (SANDAN_KAFKA_BOOTSTRAP) is unreachable")


def test_submit_of_a_missing_file_says_so_in_one_line(tmp_path):
    env = dict(os.environ, SANDAN_GATEWAY_ADDRESS=f"127.0.0.1:{free_port()}", SANDAN_GATEWAY_TOKEN="x.y",
               SANDAN_GATEWAY_CREDENTIALS="", PYTHONPATH=str(config.PROJECT_ROOT))
    missing = tmp_path / "nothing.xml"
    submitted = sandan("submit", str(missing), env=env)
    assert submitted.returncode == 2
    assert submitted.stderr.splitlines() == [f"sandan gateway submit: {missing}: no such readable file"]


def test_add_client_refuses_an_existing_id_unless_rotate_and_then_says_what_it_replaced(tmp_path):
    env = dict(os.environ, SANDAN_GATEWAY_CLIENTS=str(tmp_path / "clients.json"), PYTHONPATH=str(config.PROJECT_ROOT))
    first = sandan("add-client", "--id", "hz", "--role", "enterprise", "--code", "91330106MA27XK5W3B", env=env)
    again = sandan("add-client", "--id", "hz", "--role", "customs", env=env)
    rotated = sandan("add-client", "--id", "hz", "--role", "customs", "--rotate", env=env)
    assert first.returncode == 0 and again.returncode == 2 and rotated.returncode == 0
    assert again.stderr.splitlines() == ["sandan gateway add-client: client hz already exists (enterprise, codes "
                                         "91330106MA27XK5W3B): give --rotate to replace it and its token (its open "
                                         "streams end)"]
    assert "replaced client hz (enterprise, codes 91330106MA27XK5W3B) and its token" in rotated.stderr
    assert first.stdout.strip() not in rotated.stderr + rotated.stdout  # the old token is not shown
