"""`sandan publish` on the real Kafka: good documents through, bad ones dead-lettered with reasons."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.common import config
from services.common.ceb.writer import write_message
from services.tools.generator import generate

from .workers import read_records, with_prefix

pytestmark = pytest.mark.integration


def run_cli(*args: str, prefix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SANDAN_TOPIC_PREFIX=prefix, SANDAN_LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          cwd=config.PROJECT_ROOT, timeout=120)


def test_publish_sends_good_documents_and_dead_letters_bad_ones(stack, topic_prefix, tmp_path):
    prefix = f"{topic_prefix}pub-"
    sets = generate(3, fault_share=0, seed=21)
    xml = write_message("CEB311", [s.order for s in sets]).decode()
    bad_value = str(sets[1].order["acturalPaid"])
    xml = xml.replace(f"<ceb:acturalPaid>{bad_value}</ceb:acturalPaid>", "<ceb:acturalPaid>12.3x</ceb:acturalPaid>", 1)
    (tmp_path / "orders.xml").write_text(xml, encoding="utf-8")
    (tmp_path / "notes.xml").write_text("this is not XML", encoding="utf-8")
    (tmp_path / "payments.xml").write_bytes(write_message("CEB411", [s.payment for s in sets]))

    assert run_cli("topics", "create", prefix=prefix).returncode == 0
    done = run_cli("publish", str(tmp_path), prefix=prefix)
    assert done.returncode == 0, done.stderr
    assert "notes.xml" in done.stderr
    with with_prefix(prefix):
        orders = read_records("documents.order")
        payments = read_records("documents.payment")
        dead = read_records("deadletter")
    assert sorted(o["orderNo"] for o in orders) == sorted([sets[0].order["orderNo"], sets[2].order["orderNo"]])
    assert {k: v for k, v in orders[0].items() if k != "submitter"} in (sets[0].order, sets[2].order)
    assert all(o["submitter"] == o["ebpCode"] for o in orders)  # by default, its own sender field
    assert all(p["submitter"] == p["payCode"] for p in payments)
    assert len(payments) == 3
    reasons = {d["code"]: d for d in dead}
    assert set(reasons) == {"INVALID_DOCUMENT", "UNREADABLE_MESSAGE"}
    assert "acturalPaid" in reasons["INVALID_DOCUMENT"]["reason"]
    assert reasons["INVALID_DOCUMENT"]["documentGuid"] == sets[1].order["guid"]
    assert reasons["UNREADABLE_MESSAGE"]["payload"] == b"this is not XML"


def test_publish_without_kafka_fails_clearly(tmp_path):
    (tmp_path / "o.xml").write_bytes(write_message("CEB311", [generate(1, seed=1)[0].order]))
    env = dict(os.environ, SANDAN_KAFKA_BOOTSTRAP="127.0.0.1:9", SANDAN_LOG_LEVEL="CRITICAL", SANDAN_KAFKA_CONNECT_TIMEOUT="2")
    done = subprocess.run([sys.executable, "-m", "services.cli", "publish", str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=config.PROJECT_ROOT, timeout=120)
    assert done.returncode == 2
    assert "did not answer" in done.stderr and "Traceback" not in done.stderr


def test_publish_stamps_the_publishers_code_as_submitter(stack, topic_prefix, tmp_path):
    prefix = f"{topic_prefix}pubsub-"
    sets = generate(2, fault_share=0, seed=22)
    (tmp_path / "orders.xml").write_bytes(write_message("CEB311", [s.order for s in sets]))
    assert run_cli("topics", "create", prefix=prefix).returncode == 0
    done = run_cli("publish", "--submitter", "3301999999", str(tmp_path), prefix=prefix)
    assert done.returncode == 0, done.stderr
    with with_prefix(prefix):
        orders = read_records("documents.order")
    assert [o["submitter"] for o in orders] == ["3301999999", "3301999999"]


def test_dead_letters_of_sandan_publish_move_the_gauge_the_dead_letter_alert_reads(stack, topic_prefix, tmp_path):
    """`sandan publish` is never scraped: the gateway's watch of the deadletter topic counts for it."""
    import asyncio

    from kafka import KafkaConsumer

    from services.common import kafka_io
    from services.gateway import deadletter_watch

    prefix = f"{topic_prefix}dlw-"
    (tmp_path / "notes.xml").write_text("this is not XML", encoding="utf-8")
    assert run_cli("topics", "create", prefix=prefix).returncode == 0

    def watched() -> float:
        async def one_round():
            stop = asyncio.Event()
            factory = lambda: KafkaConsumer(bootstrap_servers=kafka_io.bootstrap(), group_id=None)  # noqa: E731
            task = asyncio.create_task(deadletter_watch.watch(factory, 0.05, stop))
            await asyncio.sleep(0)
            while deadletter_watch.gauge()._value.get() == marker:  # until the round has set it
                await asyncio.sleep(0.05)
            stop.set()
            await task
        marker = -1.0
        deadletter_watch.gauge().set(marker)
        with with_prefix(prefix):
            asyncio.run(one_round())
        return deadletter_watch.gauge()._value.get()

    before = watched()
    assert run_cli("publish", str(tmp_path), prefix=prefix).returncode == 0
    assert watched() == before + 1
