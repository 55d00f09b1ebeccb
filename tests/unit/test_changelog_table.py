"""The worker's local table: what it queues for the changelog and what it remembers across starts."""
from __future__ import annotations

import pytest

from services.common.changelog_table import OFFSETS_FILE, ChangelogTable


@pytest.fixture(params=["memory", "rocksdb"])
def table(request, tmp_path):
    t = ChangelogTable("t-changelog", None if request.param == "memory" else tmp_path / "t")
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


def test_a_restarted_worker_finds_its_rows_and_how_far_its_changelog_went(tmp_path):
    t = ChangelogTable("t-changelog", tmp_path / "t")
    t.put(2, b"k", b"v")
    t.changes()
    t.sent(2, 41)
    t.sent(2, 40)  # acknowledgements may come out of order: the highest offset counts
    t.save_offsets()
    t.close()
    again = ChangelogTable("t-changelog", tmp_path / "t")
    assert again.get(b"k") == b"v"
    assert again._written == {2: 41}
    again.close()


def test_a_torn_offsets_file_makes_the_table_forget_its_rows_and_rebuild(tmp_path):
    t = ChangelogTable("t-changelog", tmp_path / "t")
    t.put(0, b"k", b"v")
    t.close()
    (tmp_path / "t" / OFFSETS_FILE).write_text("{\"0\": 1")
    again = ChangelogTable("t-changelog", tmp_path / "t")
    assert again.get(b"k") is None and again._written == {}  # recover() reads the whole changelog
    again.close()
