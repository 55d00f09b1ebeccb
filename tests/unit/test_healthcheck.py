"""deploy/healthcheck.py: the probes docker compose runs inside the sandan containers."""
from __future__ import annotations

import importlib.util
import socket
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import config

_spec = importlib.util.spec_from_file_location("healthcheck", config.PROJECT_ROOT / "deploy" / "healthcheck.py")
healthcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(healthcheck)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_status():
    """An HTTP server on 127.0.0.1 answering every GET with the status in ``answer[0]``."""
    answer = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            self.send_response(answer[0])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1], answer
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_health():
    """A gRPC server with the standard health service; yields its address and the servicer."""
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_metrics_probe_is_healthy_on_200_only(http_status):
    port, answer = http_status
    assert healthcheck.metrics_answer(port) is None
    answer[0] = 503
    assert healthcheck.metrics_answer(port) == "/metrics answered HTTP 503"


def test_metrics_probe_fails_when_nothing_listens():
    port = unused_port()
    assert f"127.0.0.1:{port} does not answer" in healthcheck.metrics_answer(port)


def test_grpc_probe_follows_the_serving_status(grpc_health):
    address, servicer = grpc_health
    assert healthcheck.grpc_serving(address) is None
    # What the gateway does when it starts to stop.
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.grpc_serving(address) == f"gRPC health on {address}: NOT_SERVING"


def test_grpc_probe_fails_when_nothing_listens():
    assert healthcheck.grpc_serving(f"127.0.0.1:{unused_port()}").startswith("gRPC health on 127.0.0.1:")


def test_main_exits_0_1_and_never_2(http_status, capsys):
    port, answer = http_status
    assert healthcheck.main(["metrics", str(port)]) == 0
    answer[0] = 500
    assert healthcheck.main(["metrics", str(port)]) == 1
    assert "HTTP 500" in capsys.readouterr().err
    # docker reads exit status 2 as "reserved", so a wrong call is plainly unhealthy.
    assert healthcheck.main(["metrics", "ninety"]) == 1
    assert healthcheck.main(["ping"]) == 1
