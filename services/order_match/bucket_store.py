"""order_match's buckets by orderNo: the changelog table's bytes, with the latest decoded.

A declaration's documents mostly come in different batches (3.4 bucket reads per declaration
at full speed), so reading, decoding, encoding and writing a bucket per document would
dominate. Here, as in Kafka Streams' record caches:

* ``put`` only marks a bucket dirty; ``flush`` (the worker calls it before every commit, and
  ``put`` when more than ``DIRTY_MAX`` wait) encodes and writes each dirty bucket once, so a
  bucket changed by several batches between two commits is written once. Nothing is lost by
  waiting: the inputs that changed it are committed only after the flush.
* ``take`` hands out a dirty bucket as a copy: a batch that fails half-way (it is then taken
  again document by document) leaves the dirty version as it was.
* the buckets written last stay decoded (``KEPT``, a clean memo), so the next document of the
  same declaration skips the read and the decode; a clean bucket handed out leaves the memo
  (the caller changes it), so the memo never holds a state the table does not. A table rebuilt
  from its changelog (partitions assigned) empties the memo, and so does ``drop`` (the worker
  dropped its uncommitted work).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from services.common.avro import AvroCodec
from services.common.changelog_table import ChangelogTable

SCHEMA = "sandan.MatchBucket"
KEPT = 5_000  # ~3 KB each decoded: ~15 MB
DIRTY_MAX = 20_000  # written early past this: bounds memory between two commits at any rate


def copy_bucket(bucket: dict) -> dict:
    """A copy that shares nothing mutable with ``bucket`` (every container of sandan.MatchBucket);
    documents are immutable bytes and are shared."""
    return {**bucket,
            "declarations": [{**d, "guids": dict(d["guids"]), "fingerprints": dict(d["fingerprints"]),
                              "marks": {k: dict(v) if isinstance(v, dict) else v for k, v in (d.get("marks") or {}).items()},
                              "orphanChanges": list(d.get("orphanChanges") or ()),
                              **({"waybillKey": list(d["waybillKey"])} if d.get("waybillKey") is not None else {})}
                             for d in bucket["declarations"]],
            "waybills": [{**w, "key": list(w["key"])} for w in bucket["waybills"]]}


class BucketStore:
    def __init__(self, table: ChangelogTable, wire: AvroCodec, kept: int = KEPT) -> None:
        self.table, self.wire, self.kept = table, wire, kept
        self._decoded: OrderedDict[str, dict] = OrderedDict()
        self._dirty: dict[str, tuple[int, dict]] = {}  # key -> (partition, bucket) not written yet
        self._recoveries = table.recoveries

    def take(self, key: str) -> dict | None:
        """The bucket of ``key`` (None if there is none), for the caller to change and ``put``."""
        if self._recoveries != self.table.recoveries:
            self._decoded.clear()
            self._recoveries = self.table.recoveries
        dirty = self._dirty.get(key)
        if dirty is not None:
            return copy_bucket(dirty[1])
        bucket = self._decoded.pop(key, None)
        if bucket is not None:
            return bucket
        raw = self.table.get(key.encode())
        return self.wire.decode(raw)[1] if raw is not None else None

    def put(self, partition: int, key: str, bucket: dict) -> None:
        """``bucket`` is the state of ``key`` now (the caller hands it over); written by ``flush``."""
        self._dirty[key] = (partition, bucket)
        if len(self._dirty) > DIRTY_MAX:
            self.flush()

    def delete(self, partition: int, key: str) -> None:
        self._dirty.pop(key, None)
        self._decoded.pop(key, None)
        self.table.delete(partition, key.encode())

    def flush(self) -> int:
        """Write every dirty bucket to the table (and so to its changelog); returns how many."""
        dirty, self._dirty = self._dirty, {}
        for key, (partition, bucket) in dirty.items():
            self.table.put(partition, key.encode(), self.wire.encode(SCHEMA, bucket))
            self._decoded[key] = bucket
        while len(self._decoded) > self.kept:
            self._decoded.popitem(last=False)
        return len(dirty)

    def drop(self) -> None:
        """The worker's work since its last commit was dropped: the buckets it wrote are not the
        table's (dirty ones never were; the memo's may be aborted writes)."""
        self._dirty.clear()
        self._decoded.clear()

    def items(self) -> Iterator[tuple[str, dict]]:
        """Every bucket of the local table, decoded (a rescan after partitions moved)."""
        self.flush()
        for raw_key, raw in self.table.items():
            yield raw_key.decode(), self.wire.decode(raw)[1]
