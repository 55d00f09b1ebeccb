"""order_match's buckets by orderNo: the changelog table's bytes, with the latest decoded.

A declaration's documents mostly come in different batches, so its bucket is read, decoded,
changed, encoded and written about once per document. The buckets written last are kept
decoded (``KEPT``), so the next document of the same declaration skips the read and the
decode. A bucket handed out by ``take`` leaves the memo (the caller changes it); ``put``
brings it back with its new bytes, so the memo never holds a state the table does not. A
table rebuilt from its changelog (partitions assigned) empties the memo.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from services.common.avro import AvroCodec
from services.common.changelog_table import ChangelogTable

SCHEMA = "sandan.MatchBucket"
KEPT = 5_000  # ~3 KB each decoded: ~15 MB


class BucketStore:
    def __init__(self, table: ChangelogTable, wire: AvroCodec, kept: int = KEPT) -> None:
        self.table, self.wire, self.kept = table, wire, kept
        self._decoded: OrderedDict[str, dict] = OrderedDict()
        self._recoveries = table.recoveries

    def take(self, key: str) -> dict | None:
        """The bucket of ``key`` (None if there is none), for the caller to change and ``put``."""
        if self._recoveries != self.table.recoveries:
            self._decoded.clear()
            self._recoveries = self.table.recoveries
        bucket = self._decoded.pop(key, None)
        if bucket is not None:
            return bucket
        raw = self.table.get(key.encode())
        return self.wire.decode(raw)[1] if raw is not None else None

    def put(self, partition: int, key: str, bucket: dict) -> None:
        self.table.put(partition, key.encode(), self.wire.encode(SCHEMA, bucket))
        self._decoded[key] = bucket
        if len(self._decoded) > self.kept:
            self._decoded.popitem(last=False)

    def delete(self, partition: int, key: str) -> None:
        self._decoded.pop(key, None)
        self.table.delete(partition, key.encode())

    def items(self) -> Iterator[tuple[str, dict]]:
        """Every bucket of the local table, decoded (a rescan after partitions moved)."""
        for raw_key, raw in self.table.items():
            yield raw_key.decode(), self.wire.decode(raw)[1]
