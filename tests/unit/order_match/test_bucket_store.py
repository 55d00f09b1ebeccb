"""order_match's bucket cache: written once per commit, and never saying anything the table
(after the next flush) would not."""
from __future__ import annotations

import asyncio

from services.common.avro import SCHEMA_OF_KIND, codec
from services.common.changelog_table import ChangelogTable
from services.common.documents import kind_of
from services.tools.generator import generate
from services.order_match import matcher
from services.order_match.bucket_store import BucketStore, copy_bucket
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

NO_APP_TIME_CHECK = 10**15  # these clocks start in 1970, before every appTime (APP_TIME: test_app_time.py)


def _bucket(key: str) -> dict:
    return matcher.new_bucket(key)


def _busy_bucket() -> dict:
    """A bucket with a decided declaration, an open one and a waiting waybill: every container."""
    wire = codec()
    sets = generate(2, fault_share="0", seed=3)
    processor = MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                               rates=load_rates(), timeout_ms=10**9,
                               app_time_skew_ms=NO_APP_TIME_CHECK)
    bucket = matcher.new_bucket(sets[0].order["orderNo"])
    docs = list(sets[0].documents) + [dict(sets[1].order, orderNo=sets[0].order["orderNo"], ebpCode="OTHER1")]
    for n, doc in enumerate(docs):
        raw = wire.encode(SCHEMA_OF_KIND[kind_of(doc)], doc)
        asyncio.run(processor.on_document(bucket, wire.decode(raw)[1], 1000 + n, f"t:0:{n}", raw=raw))
    return bucket


def _containers(value, found=None) -> list:
    found = [] if found is None else found
    if isinstance(value, (dict, list)):
        found.append(value)
        for item in (value.values() if isinstance(value, dict) else value):
            _containers(item, found)
    return found


def test_a_copy_is_equal_and_shares_no_container():
    bucket = _busy_bucket()
    assert len(bucket["declarations"]) == 2
    copied = copy_bucket(bucket)
    assert copied == bucket
    assert not {id(c) for c in _containers(copied)} & {id(c) for c in _containers(bucket)}


def test_a_bucket_is_written_at_the_flush_once_however_often_it_changed():
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec())
    for n in range(3):
        bucket = store.take("A1") or _bucket("A1")
        bucket["waybills"].append({"doc": b"w", "guid": f"G{n}", "key": ["L", str(n)], "fingerprint": "f", "at": n})
        store.put(0, "A1", bucket)
    assert table.get(b"A1") is None and table.changes() == []  # nothing written before the flush
    assert store.flush() == 1
    assert [(p, k) for p, k, _ in table.changes()] == [(0, b"A1")]
    assert [w["guid"] for w in codec().decode(table.get(b"A1"))[1]["waybills"]] == ["G0", "G1", "G2"]


def test_a_batch_that_fails_leaves_the_dirty_bucket_as_it_was():
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec())
    store.put(0, "A1", _busy_bucket() | {"orderNo": "A1"})
    before = copy_bucket(store.take("A1"))
    taken = store.take("A1")
    taken["declarations"][0]["guids"]["order"] = "changed by a batch that then failed"
    taken["waybills"].clear()
    assert store.take("A1") == before
    store.flush()
    assert codec().decode(table.get(b"A1"))[1] == before


def test_a_clean_bucket_is_taken_back_decoded_once_and_then_read_from_the_table():
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec())
    bucket = _bucket("A1")
    store.put(0, "A1", bucket)
    store.flush()
    assert store.take("A1") is bucket  # from the memo, no decode
    bucket["orderNo"] = "changed but never put back"  # e.g. a batch that failed
    again = store.take("A1")
    assert again is not bucket and again == _bucket("A1")  # the table's state, decoded


def test_the_memo_is_bounded_and_a_delete_or_a_recovery_empties_it():
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec(), kept=2)
    for key in ("A", "B", "C"):
        store.put(0, key, _bucket(key))
    store.flush()
    assert list(store._decoded) == ["B", "C"]
    store.delete(0, "B")
    assert store.take("B") is None and list(store._decoded) == ["C"]
    table.recoveries += 1  # rows came from the changelog
    held = store._decoded["C"]
    assert store.take("C") is not held and store.take("A") == _bucket("A")
    store.put(0, "D", _bucket("D"))  # dirty: a rescan sees it too
    assert dict(store.items()).keys() == {"A", "C", "D"}


def test_dropping_the_uncommitted_work_forgets_dirty_and_memo_buckets_alike():
    # the worker's transaction was aborted (the group moved on without it): a bucket written by
    # it, in the memo, and one dirty since are not the table's; the next take reads the table
    table = ChangelogTable("t", None)
    store = BucketStore(table, codec())
    store.put(0, "A", _bucket("A"))
    store.flush()
    table.changes()
    table.save_offsets()  # A, as committed
    aborted = _bucket("A")
    aborted["waybills"].append({"doc": b"w", "guid": "G-aborted", "key": ["L", "1"], "fingerprint": "f", "at": 1})
    store.put(0, "A", aborted)
    store.flush()  # into the table's overlay and the memo: the aborted transaction's write
    store.put(0, "B", _bucket("B"))  # dirty, never written
    table.release(table.held())  # what the worker does with its tables
    table._stores[0] = table._open(0)  # assigned again: the committed store reopened
    store.drop()
    assert store.take("A") == _bucket("A"), "a bucket of the aborted transaction was read back"
    assert store.take("B") is None
