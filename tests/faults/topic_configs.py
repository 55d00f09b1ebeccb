"""Topic configurations read back from a cluster, waited for.

kafka-python's ``describe_configs`` leaves a topic's configuration empty when the broker that
answered returned an error for it (a topic created a moment ago that this broker's metadata
does not hold yet): a test reading ``min.insync.replicas`` then met a KeyError (CI run of
e0d6a9b, test_kafka_cluster.py). Read again until every topic has its configuration.
"""
from __future__ import annotations

import time

from kafka.admin import ConfigResource, ConfigResourceType

WAIT_S = 60.0  # only bounds a failure


def topic_configs(admin, names: list[str], wait_s: float = WAIT_S) -> dict[str, dict]:
    """Topic -> {config name: its description}, every one of ``names`` with its configuration."""
    deadline = time.monotonic() + wait_s
    while True:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names],
                                           config_filter="all").get("topic", {})
        missing = [n for n in names if not described.get(n)]
        if not missing:
            return described
        assert time.monotonic() < deadline, f"no configuration for {missing} after {wait_s:g} s"
        time.sleep(0.5)
