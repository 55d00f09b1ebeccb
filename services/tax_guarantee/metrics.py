"""Prometheus metrics of the tax_guarantee worker (names ``sandan_guarantee_*``).

The only label beyond codes and actions is ``assure_code``: an enterprise's customs code,
never personal data (DOMAIN §7). Gauges are in CNY; amount counters count whole fen
(0.01 CNY, rounded half-up), because a counter only adds numbers it can add exactly. Counters
count first applications only, not the re-emissions of a redelivered input.
"""
from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from services.common.metrics import child
from services.common.money import round_fen
from services.common.outputs import Output
from services.tax_guarantee.account import Account, utilisation


@dataclass
class GuaranteeMetrics:
    available: Gauge
    utilisation: Gauge
    deductions: Counter
    deducted: Counter
    refusals: Counter
    voids: Counter
    voided: Counter
    settlements: Counter
    settled: Counter
    refunds: Counter
    refunded: Counter
    commands: Counter
    warnings: Counter
    dead_letters: Counter


_metrics: GuaranteeMetrics | None = None


def guarantee() -> GuaranteeMetrics:
    global _metrics
    if _metrics is None:
        _metrics = GuaranteeMetrics(
            available=Gauge("sandan_guarantee_available_cny", "Available balance of a guarantee", ["assure_code"]),
            utilisation=Gauge("sandan_guarantee_utilisation_percent", "Outstanding tax / guaranteed amount",
                              ["assure_code"]),
            deductions=Counter("sandan_guarantee_deductions_total", "Declarations whose tax was deducted"),
            deducted=Counter("sandan_guarantee_deducted_fen_total", "Tax deducted from guarantees, fen"),
            refusals=Counter("sandan_guarantee_refusals_total", "Declarations refused by the guarantee", ["reason"]),
            voids=Counter("sandan_guarantee_voids_total", "Tax bills voided (fully or partly)"),
            voided=Counter("sandan_guarantee_voided_fen_total", "Tax given back by voids, fen"),
            settlements=Counter("sandan_guarantee_settlements_total", "Payment notices settled"),
            settled=Counter("sandan_guarantee_settled_fen_total", "Tax given back by settlements, fen"),
            refunds=Counter("sandan_guarantee_refunds_total", "Settled tax bills voided: refunds customs owes"),
            refunded=Counter("sandan_guarantee_refunded_fen_total", "Paid tax owed back by refunds, fen"),
            commands=Counter("sandan_guarantee_commands_total", "Guarantee commands", ["action", "outcome"]),
            warnings=Counter("sandan_guarantee_warnings_total", "Warnings published", ["kind"]),
            dead_letters=Counter("sandan_guarantee_dead_letters_total", "Inputs sent to the dead-letter topic",
                                 ["code"]),
        )
    return _metrics


def show_account(m: GuaranteeMetrics, account: Account) -> None:
    m.available.labels(assure_code=account.assure_code).set(account.available)
    m.utilisation.labels(assure_code=account.assure_code).set(utilisation(account.guaranteed, account.outstanding))


_MOVES = {"deduct": ("deductions", "deducted"), "void": ("voids", "voided"), "settle": ("settlements", "settled"),
          "refund": ("refunds", "refunded")}


def count_output(m: GuaranteeMetrics, output: Output) -> None:
    rec = output.record
    if output.topic == "guarantee.ledger":
        child(m.available, rec["assureCode"]).set(rec["available"])
        child(m.utilisation, rec["assureCode"]).set(utilisation(rec["guaranteed"], rec["outstanding"]))
        if rec["action"] in _MOVES:
            count, amount = _MOVES[rec["action"]]
            getattr(m, count).inc()
            getattr(m, amount).inc(int(round_fen(rec["amount"]).scaleb(2)))
    elif output.topic == "declarations.refused":
        for failure in rec["failures"]:
            child(m.refusals, failure["code"]).inc()
    elif output.topic == "guarantee.warnings":
        child(m.warnings, rec["kind"]).inc()
    elif output.topic == "deadletter":
        child(m.dead_letters, rec["code"]).inc()
