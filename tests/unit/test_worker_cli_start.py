"""`sandan worker NAME` whose service cannot be built (its RocksDB folder on a full disk): exit 70,
which a supervisor restarts, not a traceback's 1, which leaves the worker dead for good."""
from __future__ import annotations

import argparse
import logging
import types

from kafka.errors import KafkaTimeoutError

from services.cli import worker as worker_cli
from services.common.worker_exit import CRASHED


def test_a_worker_whose_state_cannot_be_opened_exits_70_with_one_critical_line(monkeypatch, caplog):
    def create_worker():
        raise Exception("IO error: No space left on device: While appending to file: /state/wakeups/000004.log")

    monkeypatch.setattr(worker_cli.kafka_io, "create_topics", lambda: None)
    monkeypatch.setattr(worker_cli.metrics, "serve", lambda port: None)
    monkeypatch.setattr(worker_cli.importlib, "import_module", lambda name: types.SimpleNamespace(
        create_worker=create_worker))
    with caplog.at_level(logging.CRITICAL, logger="sandan.worker"):
        code = worker_cli.run(argparse.Namespace(name="order-match"))
    assert code == CRASHED
    assert [r.getMessage() for r in caplog.records] == [
        "worker order-match could not start: Exception('IO error: No space left on device: While appending to"
        " file: /state/wakeups/000004.log')"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_a_worker_started_while_kafka_is_away_waits_for_it_and_then_starts(monkeypatch, caplog):
    answers = iter([KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:19092"), KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:19092"), KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:19092"), None])

    def create_topics():
        answer = next(answers)
        if answer is not None:
            raise answer

    clock = _Clock()
    monkeypatch.setattr(worker_cli.kafka_io, "create_topics", create_topics)
    with caplog.at_level(logging.WARNING, logger="sandan.worker"):
        assert worker_cli.topics_ready("order-match", sleep=clock.sleep, clock=lambda: clock.now) is None
    assert clock.pauses == [0.5, 1.0, 2.0]  # backing off, never busy
    assert len(caplog.records) == 3 and all("does not answer" in r.getMessage() for r in caplog.records)


def test_a_worker_gives_up_waiting_for_kafka_after_its_setting_with_exit_70(monkeypatch, caplog):
    def create_topics():
        raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:19092")

    clock = _Clock()
    monkeypatch.setenv("SANDAN_WORKER_KAFKA_WAIT", "30")
    monkeypatch.setattr(worker_cli.kafka_io, "create_topics", create_topics)
    with caplog.at_level(logging.CRITICAL, logger="sandan.worker"):
        assert worker_cli.topics_ready("returns", sleep=clock.sleep, clock=lambda: clock.now) == CRASHED
    assert 30 <= clock.now < 40 and max(clock.pauses) == 10.0
    assert [r.getMessage() for r in caplog.records][-1].startswith(
        "worker returns: Kafka at ") and "SANDAN_WORKER_KAFKA_WAIT=30 s" in caplog.records[-1].getMessage()


def test_a_refused_kafka_login_is_not_waited_for(monkeypatch, capsys):
    def create_topics():
        raise worker_cli.kafka_io.KafkaSecurityError("SASL authentication failed: check SANDAN_KAFKA_SASL_PASSWORD")

    clock = _Clock()
    monkeypatch.setattr(worker_cli.kafka_io, "create_topics", create_topics)
    assert worker_cli.topics_ready("tax-guarantee", sleep=clock.sleep, clock=lambda: clock.now) == 2
    assert clock.pauses == []
    assert "SANDAN_KAFKA_SASL_PASSWORD" in capsys.readouterr().err
