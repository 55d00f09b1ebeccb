"""A worker's table changelog topics, created before it starts and visible with all partitions.

A consumer may take a new topic's metadata in the instant it has no partitions yet; creating
the changelog topics beforehand, as ``kafka_io.create_topics`` does for the declared ones,
and waiting until every partition has a leader takes that instant away.
"""
from __future__ import annotations

import time

from kafka.errors import TopicAlreadyExistsError

from services.common import kafka_io

WAIT_S = 30.0


def declare_topics(wanted: dict[str, int]) -> list[str]:
    """Create the missing changelog topics (name -> partitions; compacted)
    and wait until every partition has a leader; returns the names created. Replication and
    min.insync.replicas come from the settings, as for the declared topics."""
    kafka_io.replication()
    admin = kafka_io.admin()
    try:
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        for name in missing:
            try:
                admin.create_topics([kafka_io.new_topic(name, wanted[name], {"cleanup.policy": "compact"})])
            except TopicAlreadyExistsError:
                pass  # another worker of the app made it meanwhile
        deadline = time.monotonic() + WAIT_S
        while not all(_ready(topic, wanted) for topic in admin.describe_topics(list(wanted))):
            if time.monotonic() > deadline:
                raise SystemExit(f"changelog topics without all their partitions after {WAIT_S:g}s: {sorted(wanted)}")
            time.sleep(0.2)
    finally:
        admin.close()
    return missing


def _ready(topic: dict, wanted: dict[str, int]) -> bool:
    partitions = [p for p in topic["partitions"] if p["error_code"] == 0 and p["leader_id"] >= 0]
    return topic["error_code"] == 0 and len(partitions) == wanted[topic["name"]]
