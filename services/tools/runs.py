"""What a run (a test session, a demo, a benchmark) leaves on Kafka and Redis, and its removal.

Every run works under a prefix of its own (SANDAN_TOPIC_PREFIX) so runs never see each other's
records. Left behind, their topics pile up: a broker holding a few thousand topics from earlier
runs takes minutes to load its logs on start, longer than `make up` waits. So each kind of run
removes what it made: tests and benchmarks at their end, the demo the earlier demos' at its
start (the last demo's topics stay to be looked at).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from kafka.errors import KafkaError

from services.common import kafka_io, redis_client

DELETE_BATCH = 200  # topics per DeleteTopics request; a broker handles big ones slowly


def topics_with_prefix(prefix: str) -> list[str]:
    client = kafka_io.admin()
    try:
        return sorted(t for t in client.list_topics() if t.startswith(prefix))
    finally:
        client.close()


def delete_topics(names: list[str]) -> int:
    """Delete the topics named; returns how many went (one that is already gone is no error)."""
    if not names:
        return 0
    client = kafka_io.admin()
    deleted = 0
    try:
        for start in range(0, len(names), DELETE_BATCH):
            batch = names[start:start + DELETE_BATCH]
            try:
                client.delete_topics(batch, timeout_ms=60000)
                deleted += len(batch)
            except KafkaError:
                # Some of the batch were gone already (deleted by another run's clean-up): one by one.
                for name in batch:
                    try:
                        client.delete_topics([name], timeout_ms=30000)
                        deleted += 1
                    except KafkaError:
                        pass
    finally:
        client.close()
    return deleted


def delete_redis_keys(prefix: str) -> int:
    client = redis_client.connect_sync()
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"sandan:{_glob_escape(prefix)}*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
    finally:
        client.close()
    return deleted


def forget(prefix: str, run_dir: Path | None = None) -> dict[str, int]:
    """Delete a run's topics and Redis keys (and its workers' table files under ``run_dir``)."""
    if not prefix:
        raise ValueError("refusing to forget the unprefixed (production) topics")
    topics = delete_topics(topics_with_prefix(prefix))
    keys = delete_redis_keys(prefix)
    if run_dir is not None:
        shutil.rmtree(run_dir / "state", ignore_errors=True)  # the workers' tables
    return {"topics": topics, "redis_keys": keys}


def earlier_runs(pattern: str, keep: str) -> list[str]:
    """Prefixes of earlier runs, from the topics whose names start with ``pattern`` (a regular
    expression matching a whole prefix), except ``keep``."""
    matcher = re.compile(pattern)
    client = kafka_io.admin()
    try:
        names = client.list_topics()
    finally:
        client.close()
    prefixes = {m.group(0) for m in map(matcher.match, names) if m}
    prefixes.discard(keep)
    return sorted(prefixes)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
