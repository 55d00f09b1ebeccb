"""The settings every sandan stream worker shares (services/common/streaming.py, partition_worker.py)."""
from __future__ import annotations

import asyncio

from services.common import streaming
from services.common.partition_worker import PartitionWorker


def test_each_worker_is_a_static_member_with_its_own_state_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("SANDAN_WORKER_INDEX", "1")
    worker = PartitionWorker("settings-test", ["in"])
    assert worker.instance.endswith("sandan-settings-test-1")
    folder = streaming.state_folder("settings-test")
    assert str(folder).startswith(str(tmp_path)) and worker.instance in str(folder)


def test_the_consumer_waits_at_the_broker_no_longer_than_the_setting(tmp_path, monkeypatch):
    """A long poll holds back records of partitions left out of it."""
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("SANDAN_FETCH_MAX_WAIT_MS", "123")

    async def created():
        return PartitionWorker("settings-test", ["in"])._consumer()

    assert asyncio.run(created())._fetch_max_wait_ms == 123
