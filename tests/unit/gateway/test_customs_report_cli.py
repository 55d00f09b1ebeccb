"""`sandan customs report` checks a decision as the gateway's Report does, and its default id is
the same deterministic ``ebpCode:orderNo:status`` (a retried command is one report)."""
from __future__ import annotations

import pytest

from services.cli import main
from services.cli import returns as returns_cli

BASE = ["customs", "report", "--ebp-code", "91330106MA27XK5W3B"]


@pytest.fixture
def published(monkeypatch) -> list:
    sent = []
    monkeypatch.setattr(returns_cli, "_publish", lambda prog, short, schema, key, record: sent.append(
        (short, schema, key, record)) or 0)
    return sent


@pytest.mark.parametrize("argv, problem", [
    (["--order-no", "SO1", "--status", "100"], "--reason: required when status is 100 (rejected)"),
    (["--order-no", "SO1", "--status", "800"], "--at: the release time is required when status is 800 (released)"),
    (["--order-no", "  ", "--status", "120"], "--order-no: required"),
    (["--order-no", "SO1", "--status", "800", "--at", "20990101000000"], "--at: 20990101000000 is in the future"),
])
def test_an_incomplete_decision_is_refused_in_one_line_before_kafka(argv, problem, published, capsys):
    assert main(BASE + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sandan customs report: {problem}") and err.count("\n") == 1
    assert published == []


def test_the_default_report_id_is_the_same_on_every_run(published):
    argv = BASE + ["--order-no", "SO1", "--status", "800", "--at", "20250303120000"]
    assert main(argv) == 0 and main(argv) == 0
    [(short, schema, key, first), (_, _, _, second)] = published
    assert (short, schema, key) == ("customs.reports", "sandan.CustomsReport", "SO1")
    assert first == second and first["reportId"] == "91330106MA27XK5W3B:SO1:800"
    assert (first["decidedAt"], first["reporter"]) == (1_740_974_400_000, "cli")
