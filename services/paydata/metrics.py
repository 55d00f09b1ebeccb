"""The paydata service's Prometheus metrics (labels: outcomes, answer codes, reasons; no personal data)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

_metrics = None


class PaydataMetrics:
    def __init__(self) -> None:
        self.requests = Counter("sandan_paydata_requests_total", "Payment-data requests (platDataOpen) by why and result",
                                ["reason", "result"])
        self.open_calls = Counter("sandan_paydata_open_calls_total", "platDataOpen calls to platforms by result",
                                  ["result"])
        self.outcomes = Counter("sandan_paydata_outcomes_total", "Payment-data check outcomes", ["outcome"])
        self.mismatches = Counter("sandan_paydata_mismatches_total", "Fields found different in uploads", ["field"])
        self.uploads = Counter("sandan_paydata_uploads_total", "realTimeDataUpload calls by answer code", ["code"])
        self.open_sessions = Gauge("sandan_paydata_open_sessions", "Sessions waiting for their upload")


def paydata() -> PaydataMetrics:
    global _metrics
    if _metrics is None:
        _metrics = PaydataMetrics()
    return _metrics
