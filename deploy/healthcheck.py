"""Health probes of the sandan containers (docker-compose.yml ``healthcheck``).

    python /app/deploy/healthcheck.py metrics 9301            # /metrics answers 200
    python /app/deploy/healthcheck.py grpc 127.0.0.1:50051    # gRPC health says SERVING

Exit status 0 means healthy, 1 not (docker reserves 2) (with the reason on stderr, which docker keeps in
``docker inspect``). A worker serves /metrics once its topics exist, just before it joins
its consumer group; the gateway reports SERVING once its gRPC server is up. The gRPC probe speaks
plaintext, so it fits the compose gateway, which listens on loopback inside its container.
"""
from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3


def metrics_answer(port: int, host: str = "127.0.0.1") -> str | None:
    """None when http://host:port/metrics answers 200, else why not."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"/metrics answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"/metrics answered HTTP {exc.code}"
    except OSError as exc:
        return f"/metrics on {host}:{port} does not answer: {exc}"


def grpc_serving(address: str, service: str = "") -> str | None:
    """None when the gRPC health service at ``address`` says ``service`` ('' = the server) is SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                              timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            return f"gRPC health on {address}: {exc.code().name} {exc.details() or ''}".rstrip()
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"gRPC health on {address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("metrics", "grpc") or (argv[0] == "metrics" and not argv[1].isdigit()):
        print("usage: healthcheck.py metrics PORT | grpc HOST:PORT", file=sys.stderr)
        return 1  # docker reserves exit status 2
    kind, target = argv
    problem = metrics_answer(int(target)) if kind == "metrics" else grpc_serving(target)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
