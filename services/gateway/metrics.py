"""Prometheus metrics of the gateway (served on SANDAN_GATEWAY_METRICS_PORT).

Labels are method names, gRPC status codes, outcomes and client ids (enterprise or
customs system names from the clients file): never tokens or personal data.
"""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge


@dataclass
class GatewayMetrics:
    calls: Counter
    active_streams: Gauge
    items: Counter
    documents: Counter
    streamed: Counter
    lag: Gauge


_shared: GatewayMetrics | None = None


def gateway() -> GatewayMetrics:
    """The process-wide metrics (a Prometheus registry holds each name once)."""
    global _shared
    if _shared is None:
        _shared = GatewayMetrics(
            calls=Counter("sandan_gateway_calls_total", "Finished gateway calls", ["method", "code"]),
            active_streams=Gauge("sandan_gateway_active_streams", "Open streaming calls", ["method"]),
            items=Counter("sandan_gateway_items_total", "Submitted items by answer", ["outcome"]),
            documents=Counter("sandan_gateway_documents_total", "Submitted documents", ["message", "outcome"]),
            streamed=Counter("sandan_gateway_streamed_total", "Records sent to subscribers", ["method"]),
            lag=Gauge("sandan_gateway_subscriber_lag", "Records on Kafka not yet sent, summed over a client's streams",
                      ["method", "client"]),
        )
    return _shared
