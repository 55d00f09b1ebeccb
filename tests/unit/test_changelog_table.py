"""The worker's local table: what it queues for the changelog, what each partition's store keeps
(rows and the changelog offset they reach, written together) and when a store is dropped.
Restores from the real changelog are in tests/runtime."""
from __future__ import annotations

import pytest

from services.common.changelog_table import OFFSET_KEY, ChangelogTable, store_folder


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "rocksdb"])
def table(request, tmp_path):
    t = ChangelogTable("t-changelog", None if request.param == "memory" else tmp_path / "t", revoked_grace_s=600)
    yield t
    t.close()


def test_writes_are_read_back_at_once_and_queued_for_the_changelog_in_order(table):
    table.put(1, b"a", b"1")
    table.put(3, b"b", b"2")
    table.put(1, b"a", b"3")
    table.delete(3, b"b")
    assert table.get(b"a") == b"3" and table.get(b"b") is None
    assert table.changes() == [(1, b"a", b"1"), (3, b"b", b"2"), (1, b"a", b"3"), (3, b"b", None)]
    assert table.changes() == []  # handed over once
    assert dict(table.items()) == {b"a": b"3"}


def test_deleting_a_missing_key_sends_no_tombstone(table):
    table.delete(0, b"never")
    assert table.changes() == []


def test_rows_reach_the_store_with_their_changelog_offset_and_are_read_from_it(table):
    table.put(2, b"k", b"v")
    table.put(5, b"j", b"w")
    table.changes()
    table.sent(2, 41)
    table.sent(2, 40)  # acknowledgements may come out of order: the highest offset counts
    table.sent(5, 7)
    table.save_offsets()
    assert table._stores[2].offset == 41 and table._stores[5].offset == 7
    assert table._sent == {} and table.get(b"k") == b"v" and table.get(b"j", 5) == b"w"
    table.delete(2, b"k")
    table.changes()
    table.sent(2, 42)
    table.save_offsets()
    assert table.get(b"k") is None and dict(table.items()) == {b"j": b"w"}


def test_a_write_not_handed_to_the_changelog_stays_out_of_the_store(table):
    table.put(0, b"old", b"1")
    table.changes()
    table.sent(0, 3)
    table.put(0, b"new", b"2")  # written after the changes were taken: its record is not in Kafka yet
    table.save_offsets()
    assert table._stores[0].get(b"new") is None and table._stores[0].offset == 3
    assert table.get(b"new") == b"2"  # still read back from the overlay


def test_a_restarted_worker_finds_each_partition_store_with_its_offset(tmp_path):
    t = ChangelogTable("t-changelog", tmp_path / "t", revoked_grace_s=600)
    t.put(2, b"k", b"v")
    t.changes()
    t.sent(2, 41)
    t.save_offsets()
    t.close()
    assert (store_folder(tmp_path / "t", 2)).is_dir()
    again = ChangelogTable("t-changelog", tmp_path / "t", revoked_grace_s=600)
    store = again._open(2)
    assert store.get(b"k") == b"v" and store.offset == 41 and store.get(OFFSET_KEY) == b"41"
    assert OFFSET_KEY not in dict(store.items())
    store.close()
    again.close()


def test_a_store_with_rows_but_no_offset_is_wiped(tmp_path):
    from rocksdict import Options, Rdict

    db = Rdict(str(store_folder(tmp_path / "t", 0)), Options(raw_mode=True))
    db[b"k"] = b"v"  # written outside a batch with its offset: what it reflects is unknown
    db.close()
    t = ChangelogTable("t-changelog", tmp_path / "t")
    store = t._open(0)
    assert store.get(b"k") is None and store.offset == -1
    t.close()


def test_an_unreadable_store_is_wiped(tmp_path):
    t = ChangelogTable("t-changelog", tmp_path / "t")
    t.put(0, b"k", b"v")
    t.changes()
    t.sent(0, 0)
    t.save_offsets()
    t.close()
    (store_folder(tmp_path / "t", 0) / "CURRENT").write_text("garbage\n")
    again = ChangelogTable("t-changelog", tmp_path / "t")
    store = again._open(0)
    assert store.get(b"k") is None and store.offset == -1
    again.close()


def test_the_single_store_layout_and_its_offsets_file_are_removed(tmp_path):
    (tmp_path / "t" / "db").mkdir(parents=True)
    (tmp_path / "t" / "changelog-offsets.json").write_text('{"0": 99}')
    ChangelogTable("t-changelog", tmp_path / "t").close()
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == []


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_a_revoked_store_is_kept_for_the_grace_then_deleted(tmp_path, kind):
    clock = Clock()
    t = ChangelogTable("t-changelog", None if kind == "memory" else tmp_path / "t", revoked_grace_s=600, clock=clock)
    t.put(1, b"k", b"v")
    t.changes()
    t.sent(1, 0)
    t.save_offsets()
    t.release({1})
    assert t.get(b"k") is None, "a revoked partition's rows are not read"
    clock.now += 599
    assert t.sweep() == []
    store = t._open(1)  # back within the grace: reused
    assert store.get(b"k") == b"v"
    t._stores[1] = store
    t.release({1})
    clock.now += 600
    assert t.sweep() == [1]
    if kind == "rocksdb":
        assert not store_folder(tmp_path / "t", 1).exists()
    assert t._open(1).get(b"k") is None  # back after the grace: empty, rebuilt from the changelog
    t.close()


def test_stores_left_by_an_earlier_run_are_swept_unless_assigned_again(tmp_path):
    clock = Clock()
    t = ChangelogTable("t-changelog", tmp_path / "t", clock=clock)
    for p in (0, 1):
        t.put(p, b"k%d" % p, b"v")
    t.changes()
    t.sent(0, 0)
    t.sent(1, 0)
    t.save_offsets()
    t.close()
    again = ChangelogTable("t-changelog", tmp_path / "t", revoked_grace_s=10, clock=clock)
    again._stores[0] = again._open(0)
    clock.now += 10
    assert again.sweep() == [1]
    assert store_folder(tmp_path / "t", 0).exists() and not store_folder(tmp_path / "t", 1).exists()
    again.close()


def test_writes_of_a_revoked_partition_are_dropped_not_sent(table):
    table.put(3, b"k", b"v")
    table.put(4, b"j", b"w")
    table.release({3})
    assert table.changes() == [(4, b"j", b"w")]
    assert table.get(b"k") is None
