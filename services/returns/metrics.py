"""Prometheus metrics of the returns worker (labels: kinds, outcomes, rule codes; no personal data).

Decisions are counted from the receipts that announce them, so a metric cannot disagree with
what the enterprises were told: CEB624 answers cancellations, CEB626 return requests and
CEB712 returned parcels.
"""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge

KIND_OF_RECEIPT = {"CEB624": "cancel", "CEB626": "return", "CEB712": "parcel"}
OUTCOME_OF_STATUS = {"120": "accepted", "399": "completed", "100": "refused"}


@dataclass
class ReturnsMetrics:
    inputs: Counter
    decisions: Counter
    refusals: Counter
    voids: Counter
    dead_letters: Counter
    parcels_waiting: Gauge


_metrics: ReturnsMetrics | None = None


def returns() -> ReturnsMetrics:
    global _metrics
    if _metrics is None:
        _metrics = ReturnsMetrics(
            inputs=Counter("sandan_returns_inputs_total", "Records read by the returns worker", ["source", "outcome"]),
            decisions=Counter("sandan_returns_decisions_total",
                              "Cancellations, return requests and parcels decided", ["kind", "outcome"]),
            refusals=Counter("sandan_returns_refusals_total", "Refusals by reason", ["kind", "code"]),
            voids=Counter("sandan_returns_void_commands_total", "Tax void commands sent to the guarantee service",
                          ["reason"]),
            dead_letters=Counter("sandan_returns_dead_letters_total", "Records sent to the dead-letter topic",
                                 ["code"]),
            parcels_waiting=Gauge("sandan_returns_parcels_waiting",
                                  "Returned parcels in the warehouse that no return request has claimed yet"),
        )
    return _metrics


def count_output(m: ReturnsMetrics, output) -> None:
    rec = output.record
    if output.topic == "receipts":
        kind = KIND_OF_RECEIPT.get(rec["message"], rec["message"])
        m.decisions.labels(kind=kind, outcome=OUTCOME_OF_STATUS.get(rec["returnStatus"], rec["returnStatus"])).inc()
        for failure in rec["failures"]:
            m.refusals.labels(kind=kind, code=failure["code"]).inc()
    elif output.topic == "guarantee.commands":
        m.voids.labels(reason="return" if rec["commandId"].startswith("void:return:") else "cancel").inc()
    elif output.topic == "deadletter":
        m.dead_letters.labels(code=rec["code"]).inc()
