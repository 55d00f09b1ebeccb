"""order_match's memo of decoded buckets never says anything the table does not."""
from __future__ import annotations

from services.common.avro import codec
from services.common.changelog_table import ChangelogTable
from services.order_match import matcher
from services.order_match.bucket_store import BucketStore


def _bucket(key: str) -> dict:
    return matcher.new_bucket(key)


def test_a_bucket_put_is_taken_back_decoded_once_and_then_read_from_the_table():
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec())
    bucket = _bucket("A1")
    store.put(0, "A1", bucket)
    assert store.take("A1") is bucket  # from the memo, no decode
    bucket["orderNo"] = "changed but never put back"  # e.g. a batch that failed
    again = store.take("A1")
    assert again is not bucket and again == _bucket("A1")  # the table's state, decoded


def test_the_memo_is_bounded_and_a_delete_or_a_recovery_empties_it():
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec(), kept=2)
    for key in ("A", "B", "C"):
        store.put(0, key, _bucket(key))
    assert list(store._decoded) == ["B", "C"]
    store.delete(0, "B")
    assert store.take("B") is None and list(store._decoded) == ["C"]
    table.recoveries += 1  # rows came from the changelog
    held = store._decoded["C"]
    assert store.take("C") is not held and store.take("A") == _bucket("A")
    assert dict(store.items()).keys() == {"A", "C"}
