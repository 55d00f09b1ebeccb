"""Prometheus metrics: one registry per process, served on the service's own port.

Label values are document kinds, statuses, rule codes and enterprise codes: never personal
data (DOMAIN §7).
"""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common import config

_started: set[int] = set()


def serve(port: int) -> None:
    """Start the /metrics endpoint once per port (on SANDAN_METRICS_HOST, loopback by default)."""
    if port and port not in _started:
        start_http_server(port, addr=config.get("SANDAN_METRICS_HOST"))
        _started.add(port)


@dataclass
class OrderMatchMetrics:
    documents: Counter
    verdicts: Counter
    failures: Counter
    receipts: Counter
    dead_letters: Counter
    latency: Histogram
    pending: Gauge
    expiry_overdue: Gauge


_dead_letters: Counter | None = None


def dead_letters() -> Counter:
    """``sandan_dead_letters_total{code}``, the counter the dead-letter alert reads: one per process,
    for every part of it that sends records to the dead-letter topic (order_match, the gateway)."""
    global _dead_letters
    if _dead_letters is None:
        _dead_letters = Counter("sandan_dead_letters_total", "Records sent to the dead-letter topic", ["code"])
    return _dead_letters


def count_dead_letters(outputs) -> None:
    """Count the dead letters among ``outputs`` once they are published."""
    for output in outputs:
        if output.topic == "deadletter":
            child(dead_letters(), output.record["code"]).inc()


_order_match: OrderMatchMetrics | None = None


def order_match() -> OrderMatchMetrics:
    global _order_match
    if _order_match is None:
        _order_match = OrderMatchMetrics(
            documents=Counter("sandan_documents_total", "Documents consumed by order_match", ["kind", "outcome"]),
            verdicts=Counter("sandan_verdicts_total", "Declaration verdicts", ["status"]),
            failures=Counter("sandan_verdict_failures_total", "Failed rules in rejected verdicts", ["code"]),
            receipts=Counter("sandan_receipts_total", "Receipts sent", ["message", "status"]),
            dead_letters=dead_letters(),
            latency=Histogram("sandan_match_latency_seconds", "Last document in to verdict out",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)),
            pending=Gauge("sandan_pending_wakeups", "Scheduled expiry checks of open declarations"),
            expiry_overdue=Gauge("sandan_expiry_overdue_seconds",
                                 "How far past its deadline the earliest open declaration still waits for expiry"),
        )
    return _order_match


_children: dict = {}


def child(metric, *values: str):
    """``metric.labels(*values)``, remembered: ``labels`` takes a lock and builds its key on every
    call, a few microseconds that counted at several outputs per declaration. Label values are
    bounded (see the module docstring), so the memo is too."""
    key = (id(metric), values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


def count_output(m: OrderMatchMetrics, output) -> None:
    rec = output.record
    if output.topic == "declarations.verdicts":
        child(m.verdicts, rec["status"]).inc()
        for failure in rec["failures"]:
            child(m.failures, failure["code"]).inc()
        if rec["status"] != "incomplete":  # an incomplete verdict waits for the timeout by design
            m.latency.observe(max(0, rec["decidedAt"] - rec["lastDocumentAt"]) / 1000)
    elif output.topic == "receipts":
        child(m.receipts, rec["message"], rec["returnStatus"]).inc()
    elif output.topic == "deadletter":
        child(m.dead_letters, rec["code"]).inc()
