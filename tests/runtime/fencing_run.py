"""One run of tests/runtime/fencing_worker.py on the real broker: its three topics (two
partitions each), its group's committed offsets, its worker processes, and the audit of what a
read_committed reader finds at the end (every input once in the outputs, every key counted once)."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import NewTopic

from services.common import changelogs, config, kafka_io
from tests.runtime.test_fencing import read


class FencingRun:
    def __init__(self, topic_prefix: str, tmp_path: Path, name: str, output_configs: dict | None = None) -> None:
        self.prefix, self.tmp_path, self.name = topic_prefix, tmp_path, name
        self.inputs, self.outputs = f"{topic_prefix}{name}-in", f"{topic_prefix}{name}-out"
        self.changelog = f"{topic_prefix}{name}-changelog"
        self.group = f"{topic_prefix}sandan-runtime-{name}"
        admin = kafka_io.admin()
        try:
            admin.create_topics([NewTopic(self.inputs, 2, 1), NewTopic(self.outputs, 2, 1, topic_configs=output_configs or {})])
        finally:
            admin.close()
        changelogs.declare_topics({self.changelog: 2})
        self.producer = KafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", max_request_size=1_000_000)
        self.sent: list[tuple[bytes, bytes]] = []  # (key, value) of every input record
        self.processes: list[subprocess.Popen] = []

    def start(self, index: int = 0, **env: str) -> tuple[subprocess.Popen, Path]:
        """A worker process (exactly_once, 6 s sessions, commits every 300 ms) and its log."""
        log = self.tmp_path / f"worker-{index}.log"
        settings = {**os.environ, "SANDAN_TOPIC_PREFIX": self.prefix, "SANDAN_WORKER_INDEX": "0",
                    "SANDAN_SESSION_TIMEOUT": "6", "SANDAN_COMMIT_INTERVAL_MS": "300",
                    "SANDAN_PROCESSING_GUARANTEE": "exactly_once", "SANDAN_LOCAL_DIR": str(self.tmp_path), **env}
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "tests.runtime.fencing_worker", self.inputs, self.outputs,
                                        self.changelog, str(self.tmp_path / f"state-{index}"), f"runtime-{self.name}"],
                                       cwd=config.PROJECT_ROOT, env=settings, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process, log

    def produce(self, values, partition_of=lambda n: n % 2) -> list:
        """Keys k0..k19 in turn; the records' metadata once the broker has them."""
        futures = []
        for value in values:
            key = b"k%d" % (len(self.sent) % 20)
            futures.append(self.producer.send(self.inputs, key=key, value=value, partition=partition_of(len(self.sent))))
            self.sent.append((key, value))
        self.producer.flush()
        return [f.get(timeout=30) for f in futures]

    def committed(self) -> dict[int, int]:
        admin = kafka_io.admin()
        try:
            offsets = admin.list_group_offsets({self.group: None}).get(self.group, {})
        finally:
            admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()}

    def caught_up(self) -> bool:
        done = self.committed()
        return all(done.get(p, -1) >= end for p, end in kafka_io.end_offsets(self.inputs).items())

    def keeps_up(self, process: subprocess.Popen, log: Path):
        """A check for ``wait``: caught up, failing at once if ``process`` has exited meanwhile."""
        def check() -> bool:
            assert process.poll() is None, f"the worker exited {process.returncode}: see {log}"
            return self.caught_up()
        return check

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.producer.close()

    def audit(self) -> None:
        """Every input record has one output and every key's count is its number of records."""
        inputs_read = read(self.inputs, "read_committed")
        expected = Counter(b"%d:%d:" % (r.partition, r.offset) + r.value for r in inputs_read)
        seen = Counter(r.value for r in read(self.outputs, "read_committed"))
        assert len(inputs_read) == len(self.sent)
        assert seen == expected, (f"missing {[v[:20] for v in (expected - seen)][:5]}, duplicated "
                                  f"{[v[:20] for v, n in seen.items() if n > 1][:5]}")
        counts = {}
        for r in read(self.changelog, "read_committed"):
            counts[r.key] = r.value
        assert counts == {key: b"%d" % n for key, n in Counter(key for key, _ in self.sent).items()}
