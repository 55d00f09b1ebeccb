"""A worker paused mid-transaction past its session timeout (SIGSTOP), its partitions taken over,
then woken (SIGCONT): none of its writes is accepted. In scope partition the new owner's
transactional producer fenced it: Kafka aborted its open transaction (outputs and table changes
already on the broker) and refused what it tried after waking. In scope worker the two workers'
producers have ids of their own: the group coordinator refused the woken one's offsets (its
generation was over) and it aborted the transaction itself. In scope partition the zombie exits
70; in scope worker it drops what it handled since its last commit and joins the group again,
taking a partition back from the heir. Audit, as a read_committed reader sees
the topics: every input record has exactly one output and every key's count in the table is the
number of its records."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from services.common import changelogs, config, kafka_io

pytestmark = pytest.mark.integration
WAIT_S = 120  # only bounds a failure
PAUSE = b"pause-here"


def read(topic: str, isolation: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=kafka_io.bootstrap(), group_id=None, enable_auto_commit=False,
                             isolation_level=isolation)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records, deadline = [], time.monotonic() + 60
        while any(consumer.position(p) < end[p] for p in parts):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def wait(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def rejoined(log: Path) -> bool:
    """The worker's log says it dropped its work, then that partitions were assigned to it again."""
    text = log.read_text(errors="replace")
    lost = text.find("joins its group again")
    return lost >= 0 and re.search(r"partitions \[\d[\d, ]*\] assigned", text[lost:]) is not None


def stopped(pid: int) -> bool:
    state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    return state.split()[1] == "T"


@pytest.mark.parametrize("scope", ["partition", "worker"])
def test_a_worker_paused_mid_transaction_and_woken_after_a_takeover_gets_no_write_accepted(
        stack, topic_prefix, tmp_path, scope):
    inputs, outputs = f"{topic_prefix}fencing-{scope}-in", f"{topic_prefix}fencing-{scope}-out"
    changelog = f"{topic_prefix}fencing-{scope}-changelog"
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, 2, 1), NewTopic(outputs, 2, 1)])
    admin.close()
    changelogs.declare_topics({changelog: 2})
    group = f"{topic_prefix}sandan-runtime-fencing-{scope}"

    def start(index: int, **extra: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"worker-{index}.log"
        env = {**os.environ, "SANDAN_TOPIC_PREFIX": topic_prefix, "SANDAN_WORKER_INDEX": str(index),
               "SANDAN_SESSION_TIMEOUT": "6", "SANDAN_COMMIT_INTERVAL_MS": "300",
               "SANDAN_PROCESSING_GUARANTEE": "exactly_once", "SANDAN_TRANSACTION_SCOPE": scope,
               "SANDAN_LOCAL_DIR": str(tmp_path), **extra}
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "tests.runtime.fencing_worker", inputs, outputs,
                                        changelog, str(tmp_path / f"state-{index}"), f"runtime-fencing-{scope}"],
                                       cwd=config.PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        return process, log

    producer = KafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
    sent: list[tuple[bytes, int]] = []

    def produce(values) -> None:
        for n, value in enumerate(values):
            key = b"k%d" % (n % 20)
            sent.append((key, value))
            producer.send(inputs, key=key, value=value, partition=n % 2)
        producer.flush()

    def caught_up() -> bool:
        ends = kafka_io.end_offsets(inputs)
        admin = kafka_io.admin()
        try:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
        finally:
            admin.close()
        done = {tp.partition: meta.offset for tp, meta in offsets.items()}
        return all(done.get(p, -1) >= end for p, end in ends.items())

    zombie, zombie_log = start(0, SANDAN_TEST_PAUSE_ON=PAUSE.decode())
    heir = None
    try:
        produce([b"a-%d" % n for n in range(300)])
        wait(caught_up, "the first worker handled the first records")
        producer.send(inputs, key=b"k0", value=PAUSE, partition=0).get(timeout=30)
        sent.append((b"k0", PAUSE))
        wait(lambda: stopped(zombie.pid), "the first worker paused itself mid-transaction")
        heir, heir_log = start(1)
        produce([b"b-%d" % n for n in range(300)])
        wait(caught_up, "the second worker took every partition over and handled everything")
        os.kill(zombie.pid, signal.SIGCONT)  #: the zombie wakes and goes on where it was
        if scope == "partition":
            zombie.wait(timeout=WAIT_S)
            assert zombie.returncode == 70, f"the woken worker must leave fenced (70): see {zombie_log}"
        else:  # it drops its aborted work, joins the group again and takes a partition back
            wait(lambda: rejoined(zombie_log), f"the woken worker rejoined its group and was assigned: {zombie_log}")
        produce([b"c-%d" % n for n in range(100)])
        wait(caught_up, "the workers handled the last records")
        assert heir.poll() is None, f"the new owner must keep running: see {heir_log}"
        if scope == "worker":
            assert zombie.poll() is None, f"the woken worker must keep running: see {zombie_log}"
    finally:
        for process in (zombie, heir):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        producer.close()

    inputs_read = read(inputs, "read_committed")
    committed = read(outputs, "read_committed")
    everything = read(outputs, "read_uncommitted")
    expected = Counter(b"%d:%d:" % (r.partition, r.offset) + r.value for r in inputs_read)
    seen = Counter(r.value for r in committed)
    assert len(inputs_read) == len(sent) == 701
    assert seen == expected, (f"missing {sorted(expected - seen)[:5]}, duplicated "
                              f"{sorted(v for v, n in seen.items() if n > 1)[:5]}")
    assert len(everything) > len(committed), "the zombie's open transaction was on the broker, then aborted"
    counts = {}
    for r in read(changelog, "read_committed"):
        counts[r.key] = r.value
    assert counts == {key: b"%d" % n for key, n in Counter(key for key, _ in sent).items()}
