"""The on-disk wake-up index (services/order_match/wakeup_store.py): one entry per bucket."""
from __future__ import annotations

import pytest

from services.order_match.wakeup_store import WakeupStore


@pytest.fixture
def index(tmp_path):
    store = WakeupStore(tmp_path / "wakeups")
    yield store
    store.close()


def test_a_bucket_comes_up_once_its_time_has_come_never_before(index):
    index.add(0, 5_400, "SO1")  # due at 5.4 s: indexed under second 6
    index.add(0, 5_000, "SO2")
    assert index.due(0, 4_999) == []
    assert index.due(0, 5_000) == ["SO2"]
    assert index.due(0, 5_999) == []
    assert index.due(0, 6_000) == ["SO1"]
    assert len(index) == 0 and index.earliest_ms() is None


def test_a_moved_wakeup_leaves_nothing_behind(index):
    """The defect of the in-memory index: every decided declaration left its old entries."""
    index.add(0, 86_400_000, "SO1")                      # open: its deadline
    index.move(0, "SO1", 86_400_000, 3_600_000)           # decided: its replay window
    index.move(0, "SO1", 3_600_000, 2_592_000_000)        # bodies dropped: retention
    assert len(index) == 1
    assert index.due(0, 86_400_000) == []
    assert index.due(0, 2_592_000_000) == ["SO1"]


def test_a_removed_bucket_never_comes_up(index):
    index.add(1, 1_000, "SO1")
    index.move(1, "SO1", 1_000, None)
    assert len(index) == 0 and index.due(1, 10_000) == []


def test_partitions_are_apart_and_a_key_indexed_twice_is_one_entry(index):
    index.add(0, 1_000, "SO1")
    index.add(0, 1_000, "SO1")
    index.add(1, 500, "SO9")
    index.add(0, 2_000, "SO2")
    assert len(index) == 3 and index.earliest_ms() == 1_000 and index.earliest_of(0) == 1_000
    assert index.due(0, 10_000) == ["SO1", "SO2"]
    assert index.due(1, 10_000) == ["SO9"]
    assert len(index) == 0


def test_clear_empties_it_and_a_new_store_starts_empty(tmp_path):
    first = WakeupStore(tmp_path / "wakeups")
    first.add(3, 1_000, "SO1")
    first.clear()
    assert len(first) == 0 and first.due(3, 10_000) == []
    first.add(3, 1_000, "SO2")
    first.close()
    again = WakeupStore(tmp_path / "wakeups")  # a restarted worker: the old index is gone
    try:
        assert len(again) == 0 and again.due(3, 10_000) == []
    finally:
        again.close()


def test_any_order_number_comes_back_as_it_went_in(index):
    names = ["SO-1", "订单-2", "x" * 300]
    for i, name in enumerate(names):
        index.add(0, 1_000 + i, name)
    assert sorted(index.due(0, 10_000)) == sorted(names)
