"""Running sandan workers as real processes against the real stack, for integration tests."""
from __future__ import annotations

import os
import time
from pathlib import Path

from services.common import kafka_io, topics
from services.common.avro import SCHEMA_OF_KIND, codec
from services.common.documents import kind_of
from services.demo.processes import ServiceProcess, service_env


def Worker(name: str, env: dict, log: Path) -> ServiceProcess:
    """`sandan worker NAME` as a subprocess logging to ``log``."""
    process = ServiceProcess(name, ["worker", name], env, log.parent)
    process.log = log
    return process


def worker_env(prefix: str, local_dir: Path, **extra: str) -> dict:
    return service_env(prefix, SANDAN_LOCAL_DIR=str(local_dir), SANDAN_ORDER_MATCH_METRICS_PORT="0",
                       SANDAN_LOG_LEVEL="INFO", **extra)


def with_prefix(prefix: str):
    """Context for code in this process that must see the test's topic prefix."""
    class _Prefix:
        def __enter__(self):
            self.old = os.environ.get("SANDAN_TOPIC_PREFIX")
            os.environ["SANDAN_TOPIC_PREFIX"] = prefix

        def __exit__(self, *exc):
            if self.old is None:
                os.environ.pop("SANDAN_TOPIC_PREFIX", None)
            else:
                os.environ["SANDAN_TOPIC_PREFIX"] = self.old
    return _Prefix()


def produce_documents(docs: list[dict], *, pause_every: int = 0, pause_s: float = 0.0) -> None:
    wire = codec()
    producer = kafka_io.producer()
    for i, doc in enumerate(docs, 1):
        spec = topics.BY_NAME[topics.TOPIC_OF_KIND[kind_of(doc)]]
        producer.send(spec.full_name, key=topics.key_of(doc, spec), value=wire.encode(SCHEMA_OF_KIND[kind_of(doc)], doc))
        if pause_every and i % pause_every == 0:
            producer.flush()
            time.sleep(pause_s)
    producer.flush()
    producer.close()


def read_records(short_topic: str) -> list[dict]:
    wire = codec()
    return [wire.decode(r.value)[1] for r in kafka_io.read_all(topics.name(short_topic), timeout_s=30)]


def wait_for_verdicts(expected_ids: set[str], *, timeout_s: float, workers=()) -> list[dict]:
    """All verdict records once every expected declaration has one (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdicts = read_records("declarations.verdicts")
        seen = {v["declarationId"] for v in verdicts}
        if expected_ids <= seen or time.monotonic() > deadline:
            return verdicts
        for w in workers:
            assert w.alive(), f"worker {w.name} died; see {w.log}"
        time.sleep(1.0)
