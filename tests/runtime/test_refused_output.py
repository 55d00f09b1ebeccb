"""Kafka refuses an output of an open transaction (here a record larger than its topic takes;
in soak chunk 36 a batch that expired while its partition had no leader, then every later
batch of that producer, OutOfOrderSequenceNumber). aiokafka would still commit the transaction,
without the refused records and with the input offsets: those outputs would be lost. The
worker must exit 70 instead, its transaction uncommitted; once the topic takes the record, the
restarted worker delivers every output exactly once and the table counts every record once."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from services.common import changelogs, config, kafka_io
from tests.runtime.test_fencing import read, wait

pytestmark = pytest.mark.integration
WAIT_S = 120  # only bounds a failure
TOPIC_LIMIT = 128 * 1024
BIG = b"x" * (200 * 1024)  # over the output topic's limit, under the producer's own


def test_an_output_kafka_refuses_stops_the_worker_before_its_transaction_commits(stack, topic_prefix, tmp_path):
    inputs, outputs = f"{topic_prefix}refusal-in", f"{topic_prefix}refusal-out"
    changelog = f"{topic_prefix}refusal-changelog"
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, 2, 1),
                         NewTopic(outputs, 2, 1, topic_configs={"max.message.bytes": str(TOPIC_LIMIT)})])
    admin.close()
    changelogs.declare_topics({changelog: 2})
    group = f"{topic_prefix}sandan-runtime-refusal"

    def start(index: int) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"worker-{index}.log"
        env = {**os.environ, "SANDAN_TOPIC_PREFIX": topic_prefix, "SANDAN_WORKER_INDEX": "0",
               "SANDAN_SESSION_TIMEOUT": "6", "SANDAN_COMMIT_INTERVAL_MS": "300",
               "SANDAN_PROCESSING_GUARANTEE": "exactly_once", "SANDAN_LOCAL_DIR": str(tmp_path)}
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "tests.runtime.fencing_worker", inputs, outputs,
                                        changelog, str(tmp_path / f"state-{index}"), "runtime-refusal"],
                                       cwd=config.PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        return process, log

    def committed() -> dict[int, int]:
        admin = kafka_io.admin()
        try:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    def caught_up() -> bool:
        done = committed()
        return all(done.get(p, -1) >= end for p, end in kafka_io.end_offsets(inputs).items())

    producer = KafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", max_request_size=1_000_000)
    sent: list[tuple[bytes, bytes]] = []

    def produce(values, partition_of=lambda n: n % 2) -> list:
        futures = []
        for n, value in enumerate(values):
            key = b"k%d" % (n % 20)
            sent.append((key, value))
            futures.append(producer.send(inputs, key=key, value=value, partition=partition_of(n)))
        producer.flush()
        return [f.get(timeout=30) for f in futures]

    worker, log = start(0)
    restarted = None
    try:
        produce([b"a-%d" % n for n in range(200)])
        wait(caught_up, "the worker handled the first records")
        big_at = produce([BIG], partition_of=lambda n: 0)[0].offset
        produce([b"b-%d" % n for n in range(100)])
        worker.wait(timeout=WAIT_S)
        assert worker.returncode == 70, f"a refused output must stop the worker (70): see {log}"
        assert b"MessageSizeTooLarge" in log.read_bytes(), f"the log names what Kafka refused: see {log}"
        assert committed()[0] <= big_at, "the refused record's input offset was not committed"
        assert not [r for r in read(outputs, "read_committed") if r.value.startswith(b"0:%d:" % big_at)]

        admin = kafka_io.admin()
        try:  # the topic takes the record now: the restarted worker goes on where the first stopped
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, outputs,
                                                configs={"max.message.bytes": str(1_048_588)})])
        finally:
            admin.close()
        restarted, restarted_log = start(1)
        produce([b"c-%d" % n for n in range(100)])
        wait(caught_up, "the restarted worker handled everything")
        assert restarted.poll() is None, f"the restarted worker keeps running: see {restarted_log}"
    finally:
        for process in (worker, restarted):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        producer.close()

    inputs_read = read(inputs, "read_committed")
    expected = Counter(b"%d:%d:" % (r.partition, r.offset) + r.value for r in inputs_read)
    seen = Counter(r.value for r in read(outputs, "read_committed"))
    assert len(inputs_read) == len(sent) == 401
    assert seen == expected, (f"missing {[v[:20] for v in (expected - seen)][:5]}, duplicated "
                              f"{[v[:20] for v, n in seen.items() if n > 1][:5]}")
    counts = {}
    for r in read(changelog, "read_committed"):
        counts[r.key] = r.value
    assert counts == {key: b"%d" % n for key, n in Counter(key for key, _ in sent).items()}
