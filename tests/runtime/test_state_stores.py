"""Per-partition state stores against the real changelog: what a worker finds when it is
assigned a partition whose store is missing, torn, behind or ahead, and what happens to the
store of a partition taken away (tests/unit/test_changelog_table.py has the local parts)."""
from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from aiokafka import AIOKafkaProducer

from services.common import changelogs, kafka_io
from services.common.changelog_table import ChangelogTable, store_folder

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _commit(table: ChangelogTable) -> None:
    """What the worker does at a commit: send the changes, note their offsets, save the stores."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
    await producer.start()
    try:
        for partition, key, value in table.changes():
            meta = await (await producer.send(table.topic, value=value, key=key, partition=partition))
            table.sent(partition, meta.offset)
    finally:
        await producer.stop()
    table.save_offsets()


def _topic(prefix: str, name: str) -> str:
    topic = f"{prefix}{name}-changelog"
    changelogs.declare_topics({topic: 2})
    return topic


def _filled(topic: str, folder, **kwargs) -> ChangelogTable:
    """A table that wrote 20 keys on partition 0 and 10 on partition 1, all committed."""
    table = ChangelogTable(topic, folder, **kwargs)
    asyncio.run(table.restore(kafka_io.bootstrap(), {0, 1}))
    for i in range(20):
        table.put(0, b"a%02d" % i, b"v%d" % i)
    for i in range(10):
        table.put(1, b"b%02d" % i, b"w%d" % i)
    asyncio.run(_commit(table))
    return table


def _rows(table: ChangelogTable) -> dict[bytes, bytes]:
    return dict(table.items())


EXPECTED = {**{b"a%02d" % i: b"v%d" % i for i in range(20)}, **{b"b%02d" % i: b"w%d" % i for i in range(10)}}


def test_a_deleted_store_folder_is_rebuilt_from_the_changelog_and_only_that_partition_is_read(
        stack, topic_prefix, tmp_path):
    topic = _topic(topic_prefix, "deleted-store")
    _filled(topic, tmp_path / "w").close()
    shutil.rmtree(store_folder(tmp_path / "w", 0))  # the rows and the offset they reflect, together
    again = ChangelogTable(topic, tmp_path / "w")
    assert asyncio.run(again.restore(kafka_io.bootstrap(), {0, 1})) == 20, "partition 1 was whole"
    assert _rows(again) == EXPECTED
    assert again.recoveries == 1, "readers' memos are told once, for the one partition rebuilt"
    again.close()


def test_a_lost_store_whose_old_offsets_file_survived_is_rebuilt(stack, topic_prefix, tmp_path):
    """The issue's case: the single-store layout's offsets file claimed what its lost db held."""
    topic = _topic(topic_prefix, "lost-db")
    _filled(topic, tmp_path / "w").close()
    for p in (0, 1):
        shutil.rmtree(store_folder(tmp_path / "w", p))
    (tmp_path / "w" / "changelog-offsets.json").write_text(json.dumps({"0": 19, "1": 9}))
    again = ChangelogTable(topic, tmp_path / "w")
    assert asyncio.run(again.restore(kafka_io.bootstrap(), {0, 1})) == 30
    assert _rows(again) == EXPECTED
    assert not (tmp_path / "w" / "changelog-offsets.json").exists()
    again.close()


def test_a_store_behind_its_changelog_reads_only_the_rest(stack, topic_prefix, tmp_path):
    topic = _topic(topic_prefix, "behind")
    table = _filled(topic, tmp_path / "w")
    table.put(0, b"a00", b"newer")
    table.delete(0, b"a01")
    table.put(1, b"b99", b"late")
    changes = table.changes()  # sent by this worker, which died before it saved its stores
    table.close()

    async def send():
        producer = AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
        await producer.start()
        for partition, key, value in changes:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)
        await producer.stop()

    asyncio.run(send())
    again = ChangelogTable(topic, tmp_path / "w")
    assert asyncio.run(again.restore(kafka_io.bootstrap(), {0, 1})) == 3
    expected = {**EXPECTED, b"a00": b"newer", b"b99": b"late"}
    del expected[b"a01"]
    assert _rows(again) == expected
    assert again._stores[0].offset == 21 and again._stores[1].offset == 10
    again.close()


def test_a_store_ahead_of_its_changelog_is_wiped_and_rebuilt(stack, topic_prefix, tmp_path):
    """A store claiming offsets the changelog never reached (a changelog recreated, or a store
    copied from elsewhere) holds rows the changelog does not vouch for."""
    topic = _topic(topic_prefix, "ahead")
    table = _filled(topic, tmp_path / "w")
    table._stores[0].write({b"ghost": b"x"}, 500)
    table.close()
    again = ChangelogTable(topic, tmp_path / "w")
    assert asyncio.run(again.restore(kafka_io.bootstrap(), {0, 1})) == 20
    assert _rows(again) == EXPECTED and again.get(b"ghost") is None
    assert again._stores[0].offset == 19
    again.close()


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_a_revoked_store_is_reused_within_the_grace_and_deleted_after_it(stack, topic_prefix, tmp_path, kind):
    topic = _topic(topic_prefix, f"grace-{kind}")
    clock = Clock()
    folder = tmp_path / "w" if kind == "rocksdb" else None
    table = _filled(topic, folder, revoked_grace_s=600, clock=clock)
    table.release({0, 1})
    assert _rows(table) == {}
    clock.now += 300
    assert table.sweep() == []
    assert asyncio.run(table.restore(kafka_io.bootstrap(), {0})) == 0, "reused: nothing to read"
    clock.now += 300
    assert table.sweep() == [1], "partition 0 is assigned again: kept"
    if folder is not None:
        assert store_folder(folder, 0).exists() and not store_folder(folder, 1).exists()
    assert asyncio.run(table.restore(kafka_io.bootstrap(), {1})) == 10, "deleted: rebuilt"
    assert _rows(table) == EXPECTED
    table.close()


def test_a_key_deleted_while_the_partition_was_away_does_not_come_back(stack, topic_prefix, tmp_path):
    topic = _topic(topic_prefix, "deleted-key")
    clock = Clock()
    first = _filled(topic, tmp_path / "first", revoked_grace_s=600, clock=clock)
    first.release({0})  # partition 0 moves to another worker, which deletes a key and writes one
    other = ChangelogTable(topic, tmp_path / "other")
    asyncio.run(other.restore(kafka_io.bootstrap(), {0}))
    other.delete(0, b"a05")
    other.put(0, b"a20", b"new")
    asyncio.run(_commit(other))
    other.close()

    # back within the grace: the store is behind and reads the tombstone
    assert asyncio.run(first.restore(kafka_io.bootstrap(), {0})) == 2
    assert first.get(b"a05") is None and first.get(b"a20") == b"new"
    # away again past the grace: the store is gone, so no stale row can come back even once
    # compaction has removed the tombstone from the changelog
    first.release({0})
    clock.now += 600
    first.sweep()
    assert not store_folder(tmp_path / "first", 0).exists()
    assert asyncio.run(first.restore(kafka_io.bootstrap(), {0})) == 22  # every record, from the start
    assert first.get(b"a05") is None and first.get(b"a20") == b"new"
    first.close()
