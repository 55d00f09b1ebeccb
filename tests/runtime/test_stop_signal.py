"""SIGTERM to an exactly_once worker under load, committing every 10 ms so that the signal lands
in every phase (handling, sending, committing a transaction): each time the worker finishes the
batch in hand, aborts its open transactions and exits 0 — never 70, never a CRITICAL line. Then
a read_committed audit: every input record has one output, none twice."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from services.common import changelogs, config, kafka_io
from tests.runtime.group_audit import read_committed

pytestmark = pytest.mark.integration
STOPS = 8


def test_sigterm_at_any_moment_of_a_transaction_exits_0_and_loses_or_repeats_nothing(stack, topic_prefix, tmp_path):
    inputs, outputs, changelog = f"{topic_prefix}stop-in", f"{topic_prefix}stop-out", f"{topic_prefix}stop-changelog"
    changelogs.declare_topics({changelog: 4})
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, 4, 1), NewTopic(outputs, 1, 1)])
    admin.close()
    codes: list[int] = []
    sent: list[bytes] = []

    async def load(stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), linger_ms=2, acks="all")
        await producer.start()
        n = 0
        while not stop.is_set():
            key = b"k%02d" % (n % 40)
            value = b"%s:%d" % (key, n // 40)
            await producer.send(inputs, key=key, value=value)
            sent.append(value)
            n += 1
            await asyncio.sleep(0.002)
        await producer.stop()

    async def main() -> None:
        stop = asyncio.Event()
        loading = asyncio.ensure_future(load(stop))
        # a group of its own (the prefix names it): test_trading_partitions runs the same worker program
        env = {**os.environ, "SANDAN_TOPIC_PREFIX": f"{topic_prefix}stop-", "SANDAN_WORKER_ID": f"{topic_prefix}stopper",
               "SANDAN_COMMIT_INTERVAL_MS": "10", "SANDAN_PROCESSING_GUARANTEE": "exactly_once"}
        for i in range(STOPS):
            status = tmp_path / f"status-{i}.json"
            with (tmp_path / f"worker-{i}.log").open("wb") as log:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "tests.runtime.trading_worker", inputs, outputs, changelog,
                     str(tmp_path / "state"), str(status)],
                    cwd=config.PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            while not (status.exists() and json.loads(status.read_text() or "{}").get("partitions")):
                assert time.monotonic() < deadline, f"worker {i} never owned its partitions"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)
            worker.send_signal(signal.SIGTERM)
            codes.append(await asyncio.to_thread(worker.wait, 60))
        stop.set()
        await loading

    asyncio.run(main())
    logs = {i: (tmp_path / f"worker-{i}.log").read_text(errors="replace") for i in range(STOPS)}
    assert codes == [0] * STOPS, f"exit codes {codes}; see {tmp_path}"
    assert not [i for i, text in logs.items() if "CRITICAL" in text]
    # the last records are handled by one more worker, left running until they are
    with (tmp_path / "worker-last.log").open("wb") as log:
        last = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.trading_worker", inputs, outputs, changelog,
             str(tmp_path / "state"), str(tmp_path / "status-last.json")],
            cwd=config.PROJECT_ROOT, env={**os.environ, "SANDAN_TOPIC_PREFIX": f"{topic_prefix}stop-",
                                          "SANDAN_WORKER_ID": f"{topic_prefix}stopper"},
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(outs := read_committed(outputs)) < len(sent):
            assert time.monotonic() < deadline, f"{len(outs)} outputs of {len(sent)} inputs"
            time.sleep(0.5)
    finally:
        last.send_signal(signal.SIGTERM)
        last.wait(60)
    handled = Counter(r.key for r in outs)
    assert sorted(handled) == sorted(sent), "every input handled"
    assert [k for k, n in handled.items() if n > 1] == [], "none twice"
