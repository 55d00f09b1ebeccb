"""The worker's index of bucket wake-ups (services/order_match/wakeups.py)."""
from __future__ import annotations

from services.order_match.wakeups import Wakeups


def test_a_bucket_comes_up_once_its_time_has_come_never_before():
    index = Wakeups()
    index.add(0, 5_400, "SO1")  # due at 5.4 s: indexed under second 6
    index.add(0, 5_000, "SO2")
    assert index.due(0, 4_999) == []
    assert index.due(0, 5_000) == ["SO2"]
    assert index.due(0, 5_999) == []
    assert index.due(0, 6_000) == ["SO1"]
    assert len(index) == 0 and index.earliest_ms() is None


def test_partitions_are_apart_and_a_key_indexed_twice_comes_up_once():
    index = Wakeups()
    index.add(0, 1_000, "SO1")
    index.add(0, 1_000, "SO1")
    index.add(0, 2_000, "SO1")
    index.add(1, 1_000, "SO9")
    assert index.earliest_ms() == 1_000 and len(index) == 4
    assert index.due(0, 10_000) == ["SO1"]
    assert index.due(1, 10_000) == ["SO9"]
    assert len(index) == 0


def test_any_order_number_comes_back_as_it_went_in():
    index = Wakeups()
    keys = ["SO\n1", "", "订单-42", "x" * 300]
    for key in keys:
        index.add(3, 7_000, key)
    assert index.due(3, 7_000) == keys
