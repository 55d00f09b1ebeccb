"""A worker's key-value table: a local store, mirrored to a compacted changelog topic.

Writes go to the local store at once and are queued as changelog records (``changes``),
which the worker sends with its outputs, in the input record's partition, before it commits
the input offsets. So what a committed input did to the table is on the changelog, and a
worker that takes a partition over (on this host or another) rebuilds the partition's keys
from there (``recover``).

The local store remembers up to which changelog offset it holds each partition
(``changelog-offsets.json``, written at every commit), so a worker restarted on the same host
reads only what came after. The store may hold writes newer than that (sent, not yet
acknowledged when the process died): their inputs were not committed, are taken again and
write the same values again (every effect in sandan is idempotent per input).

``memory`` keeps the table in a dict, rebuilt from the whole changelog at every start (tests,
demos); the default is RocksDB with its memory capped (SANDAN_ROCKSDB_MEMORY_MB).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict

log = logging.getLogger("sandan.table")

OFFSETS_FILE = "changelog-offsets.json"
# A changelog record: (partition, key, value); value None deletes the key (a tombstone).
Change = tuple[int, bytes, "bytes | None"]


def _rocksdb(path: Path, memory_mb: int) -> Rdict:
    """Half of the budget for the block cache, half for two write buffers."""
    budget = memory_mb * 1024 * 1024
    options = Options(raw_mode=True)
    options.set_write_buffer_size(budget // 4)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(budget // 2))
    options.set_block_based_table_factory(table)
    return Rdict(str(path), options)


class ChangelogTable:
    def __init__(self, topic: str, folder: Path | None, *, memory_mb: int = 32) -> None:
        """``folder`` None: in memory. Else the store lives in ``folder`` (one per worker identity)."""
        self.topic = topic
        self.folder = folder
        self._pending: list[Change] = []
        self._written: dict[int, int] = {}  # partition -> highest changelog offset the store holds
        self.recoveries = 0  # how many times rows came from the changelog (readers' memos are stale then)
        if folder is None:
            self._db: dict | Rdict = {}
            return
        folder.mkdir(parents=True, exist_ok=True)
        offsets = folder / OFFSETS_FILE
        if offsets.exists():
            try:
                self._written = {int(p): int(o) for p, o in json.loads(offsets.read_text()).items()}
            except (ValueError, AttributeError) as exc:  # a torn file: the store cannot say what it holds
                log.warning("%s unreadable (%s): rebuilding the table from its changelog", offsets, exc)
                shutil.rmtree(folder / "db", ignore_errors=True)
        self._db = _rocksdb(folder / "db", memory_mb)

    # --- the worker's reads and writes -------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._db[key] = value
        self._pending.append((partition, key, value))

    def delete(self, partition: int, key: bytes) -> None:
        if self._remove(key):
            self._pending.append((partition, key, None))

    def _remove(self, key: bytes) -> bool:
        if self._db.get(key) is None:
            return False
        del self._db[key]
        return True

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._db.items())

    def changes(self) -> list[Change]:
        """The changelog records written since the last call (the caller sends them)."""
        pending, self._pending = self._pending, []
        return pending

    def sent(self, partition: int, offset: int) -> None:
        """Kafka took a changelog record of ``partition`` at ``offset``."""
        if offset > self._written.get(partition, -1):
            self._written[partition] = offset

    def save_offsets(self) -> None:
        """Called after a commit: what the store holds, for the next start on this host."""
        if self.folder is None:
            return
        target = self.folder / OFFSETS_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._written))
        os.replace(tmp, target)

    def close(self) -> None:
        if isinstance(self._db, Rdict):
            self._db.close()

    # --- rebuilding from the changelog ----------------------------------------------------------
    async def recover(self, bootstrap: str, partitions: set[int]) -> int:
        """Apply every changelog record of ``partitions`` the store does not hold yet; returns how many."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if not partitions:
            return 0
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        applied = 0
        started = time.monotonic()
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            todo = {}
            for tp in tps:
                start = self._written.get(tp.partition, -1) + 1
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    todo[tp] = ends[tp]
            next_report = time.monotonic() + 5
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=10_000)
                for tp, records in batch.items():
                    self.recoveries += 1
                    for r in records:
                        if r.value is None:
                            self._remove(r.key)
                        else:
                            self._db[r.key] = r.value
                        self.sent(tp.partition, r.offset)
                    applied += len(records)
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
                if time.monotonic() >= next_report:
                    log.info("%s: %d changelog records applied, %d partitions to go", self.topic, applied, len(todo))
                    next_report = time.monotonic() + 5
        finally:
            await consumer.stop()
        self.save_offsets()
        log.info("%s: partitions %s recovered (%d records, %.1f s)", self.topic, sorted(partitions), applied,
                 time.monotonic() - started)
        return applied
