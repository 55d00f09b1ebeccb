"""When each bucket next needs the worker, on disk: exactly one entry per bucket that has a wake-up.

The in-memory index this replaces (packed order numbers per second) never took an entry out early, so every decided
declaration left its old deadline, replay and retention entries behind: at a steady 800
declarations/s that is ~70 million stale entries a day, far past a worker's memory. Here a
bucket's entry moves when its wake-up time moves (``move``), and disappears with the bucket
(``remove``), so the index holds one small key per bucket in the table and lives in a local
RocksDB whose memory is capped; due entries are read in time order with a range scan.

Keys are ``partition (2 bytes) | second (8 bytes, big-endian) | orderNo``: one partition's
entries are contiguous and sorted by time. The store is local and not changelogged: it is
emptied when the worker starts and rebuilt from the table whenever partitions are assigned
(``clear`` then ``add``), so a crash never leaves it out of step with the table.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

_END = b"\xff\xff\xff"  # after every key (a partition takes 2 bytes)
CACHE_BYTES = 8 * 1024 * 1024


def _second(wake_ms: int) -> int:
    return -(-wake_ms // 1000)  # rounded up: an entry never comes up early


def _key(partition: int, wake_ms: int, order_no: str) -> bytes:
    return partition.to_bytes(2, "big") + max(_second(wake_ms), 0).to_bytes(8, "big") + order_no.encode()


class WakeupStore:
    def __init__(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)  # a previous process's index says nothing now
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.set_write_buffer_size(CACHE_BYTES)
        options.set_max_write_buffer_number(2)
        self._db = Rdict(str(path), options)
        self._count = 0
        self._partitions: set[int] = set()

    def add(self, partition: int, wake_ms: int, order_no: str) -> None:
        key = _key(partition, wake_ms, order_no)
        if self._db.get(key) is None:
            self._db[key] = b""
            self._count += 1
            self._partitions.add(partition)

    def remove(self, partition: int, wake_ms: int, order_no: str) -> None:
        key = _key(partition, wake_ms, order_no)
        if self._db.get(key) is not None:
            del self._db[key]
            self._count -= 1

    def move(self, partition: int, order_no: str, old_ms: int | None, new_ms: int | None) -> None:
        """The bucket's wake-up went from ``old_ms`` to ``new_ms`` (None: it has none)."""
        if old_ms is not None and (new_ms is None or _second(old_ms) != _second(new_ms)):
            self.remove(partition, old_ms, order_no)
        if new_ms is not None:
            self.add(partition, new_ms, order_no)

    def due(self, partition: int, now_ms: int) -> list[str]:
        """Every order number of the partition whose wake-up has come (taken out), each once."""
        prefix = partition.to_bytes(2, "big")
        last = (now_ms // 1000).to_bytes(8, "big")
        found: dict[str, None] = {}
        batch = WriteBatch(raw_mode=True)
        it = self._db.iter()
        try:
            it.seek(prefix)
            while it.valid():
                key = it.key()
                if key[:2] != prefix or key[2:10] > last:
                    break
                found[key[10:].decode()] = None
                batch.delete(key)
                self._count -= 1
                it.next()
        finally:
            del it  # an open iterator pins the database
        if found:
            self._db.write(batch)
        return list(found)

    def earliest_ms(self) -> int | None:
        """The first wake-up time of any partition (None when nothing is indexed)."""
        firsts = [first for first in map(self.earliest_of, self._partitions) if first is not None]
        return min(firsts) if firsts else None

    def earliest_of(self, partition: int) -> int | None:
        prefix = partition.to_bytes(2, "big")
        it = self._db.iter()
        try:
            it.seek(prefix)
            return int.from_bytes(it.key()[2:10], "big") * 1000 if it.valid() and it.key()[:2] == prefix else None
        finally:
            del it

    def clear(self) -> None:
        self._db.delete_range(b"", _END)
        self._count = 0
        self._partitions.clear()

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count
