"""A worker's output partition without a leader for longer than aiokafka's own bound (its request
timeout, 40 s), as while a restarted broker takes its partitions back on a loaded machine (CI's
Kafka-restart fault scenario: two workers exited 70 with LeaderNotAvailableError). Within
SANDAN_KAFKA_DELIVERY_TIMEOUT (120 s) the worker waits: no exit, every output delivered once."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from kafka import KafkaProducer
from kafka.admin import NewTopic

from services.common import changelogs, config, kafka_io
from tests.runtime.test_fencing import read, wait

pytestmark = pytest.mark.integration
LEADERLESS_S = 50  # past aiokafka's 40 s, within the worker's bound


def test_an_output_partition_without_a_leader_for_50_s_is_waited_for(stack, topic_prefix, tmp_path):
    inputs, outputs = f"{topic_prefix}leaderless-in", f"{topic_prefix}leaderless-out"
    changelog = f"{topic_prefix}leaderless-changelog"
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, 2, 1), NewTopic(outputs, 2, 1)])
    admin.close()
    changelogs.declare_topics({changelog: 2})
    group = f"{topic_prefix}sandan-runtime-leaderless"
    log = tmp_path / "worker.log"
    env = {**os.environ, "SANDAN_TOPIC_PREFIX": topic_prefix, "SANDAN_WORKER_INDEX": "0",
           "SANDAN_SESSION_TIMEOUT": "6", "SANDAN_COMMIT_INTERVAL_MS": "300",
           "SANDAN_PROCESSING_GUARANTEE": "exactly_once", "SANDAN_LOCAL_DIR": str(tmp_path),
           "SANDAN_TEST_LEADERLESS": f"gap:{LEADERLESS_S}"}
    env.pop("SANDAN_KAFKA_DELIVERY_TIMEOUT", None)  # the default is what is shown

    def committed() -> dict[int, int]:
        admin = kafka_io.admin()
        try:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    def caught_up() -> bool:
        assert worker.poll() is None, f"the worker exited {worker.returncode}: see {log}"
        done = committed()
        return all(done.get(p, -1) >= end for p, end in kafka_io.end_offsets(inputs).items())

    producer = KafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
    count = 0

    def produce(values) -> None:
        nonlocal count
        for value in values:
            producer.send(inputs, key=b"k%d" % (count % 20), value=value, partition=count % 2)
            count += 1
        producer.flush()

    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "tests.runtime.fencing_worker", inputs, outputs,
                                   changelog, str(tmp_path / "state"), "runtime-leaderless"],
                                  cwd=config.PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        produce([b"a-%d" % n for n in range(100)])
        wait(caught_up, "the worker handled the first records")
        produce([b"gap"] + [b"b-%d" % n for n in range(100)])
        wait(lambda: b"no leader for" in log.read_bytes(), "the worker's outputs lost their leader")
        wait(caught_up, "the worker handled the records sent while its outputs had no leader")
        assert worker.poll() is None, f"the worker keeps running: see {log}"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        producer.close()

    inputs_read = read(inputs, "read_committed")
    expected = Counter(b"%d:%d:" % (r.partition, r.offset) + r.value for r in inputs_read)
    assert len(inputs_read) == count == 201
    assert Counter(r.value for r in read(outputs, "read_committed")) == expected
