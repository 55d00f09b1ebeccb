"""The faust settings every sandan worker shares (services/common/streaming.py)."""
from __future__ import annotations

from services.common import streaming


def test_offsets_are_committed_by_the_timer_every_second_never_inline_in_the_fetch_loop(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    conf = streaming.new_app("settings-test").conf
    assert conf.broker_commit_interval == 1.0
    # An inline commit every N records stalls fetching while the producer flushes (bench/RESULTS.md).
    assert conf.broker_commit_every >= 2**31 - 1


def test_each_worker_is_a_static_member_with_its_own_table_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("SANDAN_WORKER_INDEX", "1")
    conf = streaming.new_app("settings-test").conf
    assert conf.consumer_group_instance_id.endswith("sandan-settings-test-1")
    assert str(conf.datadir).startswith(str(tmp_path)) and conf.consumer_group_instance_id in str(conf.datadir)


def test_the_consumer_waits_at_the_broker_no_longer_than_the_setting(tmp_path, monkeypatch):
    """faust hard-codes 1.5 s; a long poll holds back records of partitions left out of it."""
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("SANDAN_FETCH_MAX_WAIT_MS", "123")
    import asyncio

    async def created():
        app = streaming.new_app("settings-test")
        return app.consumer._thread._create_worker_consumer(app.transport)

    assert asyncio.run(created())._fetch_max_wait_ms == 123
