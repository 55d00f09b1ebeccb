"""A worker's key-value table: one local store per input partition, mirrored to a compacted
changelog topic (the changelog is the truth; a store is a copy that may be behind).

Writes are read back at once (an overlay in memory) and queued as changelog records
(``changes``), which the worker sends with its outputs, in the input record's partition, before
it commits the input offsets. After that flush (``save_offsets``) each partition's writes go
into its store in one RocksDB write batch together with the changelog offset they reach, so a
store and the offset it claims can never disagree, whatever kills the process.

A store is opened on assignment (``restore``) and checked against the changelog: missing,
unreadable, without an offset, or ahead of the changelog's end (or behind its start) it is
wiped and rebuilt; otherwise only the records after its offset are read. On revoke
(``release``) it is closed, and deleted ``revoked_grace_s`` later (``sweep``): a partition
back within the grace reuses its store, one back later is rebuilt, so a key deleted by its
new owner meanwhile cannot come back and the disk does not grow with every reassignment.

``folder`` None keeps the stores in dicts (tests, demos; rebuilt at every start); else each
partition has a RocksDB folder ``partition-<n>`` under ``folder``, sharing one memory budget
(SANDAN_ROCKSDB_MEMORY_MB).
"""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

from services.common import config

log = logging.getLogger("sandan.table")

# A changelog record: (partition, key, value); value None deletes the key (a tombstone).
Change = tuple[int, bytes, "bytes | None"]
# The store's own row: the changelog offset its data reflects. No table key starts with 0xFF 0x00.
OFFSET_KEY = b"\xff\x00sandan.changelog-offset"
# Files of the single-RocksDB layout (one store for every partition, offsets in a side file).
OLD_LAYOUT = ("db", "changelog-offsets.json", "changelog-offsets.tmp")
RESTORE_CHUNK = 10_000  # changelog records per fetch and per write batch while restoring


def store_folder(folder: Path, partition: int) -> Path:
    return folder / f"partition-{partition}"


class StoreUnreadable(Exception):
    pass


class _MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.offset = -1  # the last changelog offset applied; -1: none

    def get(self, key: bytes) -> bytes | None:
        return self.rows.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.rows.items()))

    def write(self, rows: dict[bytes, bytes | None], offset: int) -> None:
        for key, value in rows.items():
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value
        self.offset = max(self.offset, offset)

    def close(self) -> None:
        pass


class _RocksStore:
    """One partition's RocksDB; ``offset`` is read from the store itself."""

    def __init__(self, path: Path, options: Options) -> None:
        self.path = path
        try:
            self.db = Rdict(str(path), options)
        except Exception as exc:  # noqa: BLE001 - rocksdict raises a bare Exception (corruption, I/O)
            raise StoreUnreadable(f"{path}: {exc}") from exc
        raw = self.db.get(OFFSET_KEY)
        try:
            self.offset = int(raw) if raw is not None else -1
        except ValueError as exc:
            self.db.close()
            raise StoreUnreadable(f"{path}: changelog offset {raw!r} unreadable") from exc

    def is_empty(self) -> bool:
        it = self.db.iter()
        it.seek_to_first()
        return not it.valid()

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return ((k, v) for k, v in self.db.items() if k != OFFSET_KEY)

    def write(self, rows: dict[bytes, bytes | None], offset: int) -> None:
        """The rows and the offset they reach, in one atomic write."""
        batch = WriteBatch(raw_mode=True)
        for key, value in rows.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.offset = max(self.offset, offset)
        batch.put(OFFSET_KEY, str(self.offset).encode())
        self.db.write(batch)

    def close(self) -> None:
        self.db.close()


class ChangelogTable:
    def __init__(self, topic: str, folder: Path | None, *, memory_mb: int = 32,
                 revoked_grace_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``folder`` None: in memory. Else the stores live in ``folder`` (one per worker identity)."""
        self.topic = topic
        self.folder = folder
        self.grace_s = (config.get_int("SANDAN_STORE_REVOKED_GRACE_SECONDS") if revoked_grace_s is None
                        else revoked_grace_s)
        self.clock = clock
        self._pending: list[Change] = []
        self._unsent: dict[int, dict[bytes, bytes | None]] = {}  # written, not handed to ``changes`` yet
        self._sent: dict[int, dict[bytes, bytes | None]] = {}  # handed over, not in the store yet
        self._written: dict[int, int] = {}  # partition -> highest changelog offset Kafka took
        self._stores: dict[int, _MemoryStore | _RocksStore] = {}  # open
        self._revoked: dict[int, float] = {}  # partition -> when its store was closed (deleted after the grace)
        self._kept: dict[int, _MemoryStore] = {}  # memory stores closed, within the grace
        self.restoring: set[int] = set()  # partitions whose store is being rebuilt (``items`` leaves them out)
        # how many times a partition's rows came from the changelog or were wiped (readers' memos
        # are stale then); counted as each partition becomes ready, not per chunk
        self.recoveries = 0
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name in OLD_LAYOUT:  # its offsets could claim rows it lost: rebuilt from the changelog instead
            old = folder / name
            if old.exists():
                log.warning("%s: single-store layout found; removed (the stores are rebuilt per partition)", old)
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        budget = memory_mb * 1024 * 1024
        self._options = Options(raw_mode=True)
        # every partition's store shares one block cache (half the budget) and one write-buffer cap
        self._options.set_write_buffer_manager(WriteBufferManager(budget // 2, False))
        self._options.set_write_buffer_size(max(budget // 8, 1 << 20))
        self._options.set_max_write_buffer_number(2)
        blocks = BlockBasedOptions()
        blocks.set_block_cache(Cache(budget // 2))
        self._options.set_block_based_table_factory(blocks)
        now = self.clock()
        for path in folder.glob("partition-*"):  # stores left by an earlier run: not ours until assigned
            try:
                self._revoked[int(path.name.split("-", 1)[1])] = now
            except ValueError:
                continue

    # --- the worker's reads and writes -------------------------------------------------------
    def get(self, key: bytes, partition: int | None = None) -> bytes | None:
        """``partition`` if the caller knows it; else every open partition is looked at (a key
        lives in one partition)."""
        if partition is not None:
            overlays = [o for o in (self._unsent.get(partition), self._sent.get(partition)) if o is not None]
            store = self._stores.get(partition)
            stores = [store] if store is not None else []
        else:  # the dicts themselves, not copies: this is on the path of every bucket read
            overlays = [*self._unsent.values(), *self._sent.values()]
            stores = self._stores.values()
        for overlay in overlays:  # written later than what the stores hold
            if key in overlay:
                return overlay[key]
        for store in stores:
            value = store.get(key)
            if value is not None:
                return value
        return None

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._unsent.setdefault(partition, {})[key] = value
        self._pending.append((partition, key, value))

    def delete(self, partition: int, key: bytes) -> None:
        if self.get(key, partition) is not None:
            self._unsent.setdefault(partition, {})[key] = None
            self._pending.append((partition, key, None))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every row of the partitions open and restored, with the writes not in their stores yet."""
        for p in sorted(self._partitions() - self.restoring):
            overlay = {**self._sent.get(p, {}), **self._unsent.get(p, {})}
            for key, value in overlay.items():
                if value is not None:
                    yield key, value
            store = self._stores.get(p)
            if store is not None:
                for key, value in store.items():
                    if key not in overlay:
                        yield key, value

    def _partitions(self) -> set[int]:
        return set(self._stores) | set(self._unsent) | set(self._sent)

    def changes(self) -> list[Change]:
        """The changelog records written since the last call (the caller sends them)."""
        pending, self._pending = self._pending, []
        for p, rows in self._unsent.items():
            self._sent.setdefault(p, {}).update(rows)
        self._unsent = {}
        return pending

    def sent(self, partition: int, offset: int) -> None:
        """Kafka took a changelog record of ``partition`` at ``offset``."""
        if offset > self._written.get(partition, -1):
            self._written[partition] = offset

    def save_offsets(self) -> None:
        """After the flush: the rows handed to ``changes`` go into their stores, each partition's
        with the changelog offset they reach, in one write."""
        for p in set(self._sent) | set(self._written):
            rows = self._sent.pop(p, {})
            offset = self._written.get(p, -1)
            store = self._stores.get(p)
            if store is None:
                store = self._stores[p] = self._open(p)  # written without ``restore`` (a caller's own partition)
            if rows or offset > store.offset:
                store.write(rows, offset)

    def close(self) -> None:
        """Closes every store (they stay on disk for the next start)."""
        for store in self._stores.values():
            store.close()
        self._stores = {}

    # --- assignment and revocation -------------------------------------------------------------
    def release(self, partitions: Iterable[int]) -> None:
        """Partitions taken away: their stores are closed (deleted by ``sweep`` after the grace)
        and what was not saved is dropped (the changelog has it, or its input was not committed)."""
        now = self.clock()
        for p in partitions:
            self._unsent.pop(p, None)
            self._sent.pop(p, None)
            self._written.pop(p, None)
            self.restoring.discard(p)
            store = self._stores.pop(p, None)
            if store is None:
                continue
            store.close()
            self._revoked[p] = now
            if isinstance(store, _MemoryStore):
                self._kept[p] = store
        self._pending = [c for c in self._pending if c[0] in self._partitions()]
        self.sweep()

    def held(self) -> set[int]:
        """The partitions with an open store or writes not in one yet."""
        return self._partitions() | self.restoring

    def sweep(self) -> list[int]:
        """Deletes the stores revoked more than the grace ago; returns their partitions."""
        now = self.clock()
        gone = sorted(p for p, at in self._revoked.items() if now - at >= self.grace_s and p not in self._stores)
        for p in gone:
            del self._revoked[p]
            self._kept.pop(p, None)
            if self.folder is not None:
                shutil.rmtree(store_folder(self.folder, p), ignore_errors=True)
        if gone:
            log.info("%s: stores of partitions %s deleted (revoked %ss ago or more)", self.topic, gone, self.grace_s)
        return gone

    def _open(self, partition: int) -> _MemoryStore | _RocksStore:
        """The partition's store as it is on disk (or kept in memory), or a new empty one if it
        is missing or cannot be read."""
        self._revoked.pop(partition, None)
        if self.folder is None:
            return self._kept.pop(partition, None) or _MemoryStore()
        path = store_folder(self.folder, partition)
        try:
            store = _RocksStore(path, self._options)
        except StoreUnreadable as exc:
            log.warning("%s: store unreadable (%s): rebuilt from the changelog", self.topic, exc)
            return self._wipe(partition, None)
        if store.offset < 0 and not store.is_empty():  # rows without an offset: what they reflect is unknown
            return self._wipe(partition, store)
        return store

    def _wipe(self, partition: int, store: _MemoryStore | _RocksStore | None) -> _MemoryStore | _RocksStore:
        if store is not None:
            store.close()
        if self.folder is None:
            return _MemoryStore()
        shutil.rmtree(store_folder(self.folder, partition), ignore_errors=True)
        return _RocksStore(store_folder(self.folder, partition), self._options)

    # --- rebuilding from the changelog ----------------------------------------------------------
    async def restore(self, bootstrap: str, partitions: Iterable[int],
                      ready: Callable[[int], None] | None = None) -> int:
        """Opens and checks the stores of ``partitions`` and applies the changelog records each
        lacks, in chunks (the event loop runs between them); ``ready(p)`` as each partition is
        up to date. Returns how many records were applied."""
        from aiokafka import TopicPartition

        wanted = sorted(set(partitions))
        if not wanted:
            return 0
        for p in wanted:
            if p not in self._stores:
                self._stores[p] = self._open(p)
        self.restoring.update(wanted)
        consumer = self._restore_consumer(bootstrap)
        await consumer.start()
        applied = 0
        started = time.monotonic()
        try:
            tps = {TopicPartition(self.topic, p): p for p in wanted}
            ends = await consumer.end_offsets(list(tps))
            starts = await consumer.beginning_offsets(list(tps))
            consumer.assign(list(tps))
            todo: dict = {}
            for tp, p in tps.items():
                store = self._stores[p]
                if store.offset >= ends[tp] or store.offset + 1 < starts[tp]:
                    log.warning("%s: store of partition %d holds offset %d, the changelog %d..%d: rebuilt",
                                self.topic, p, store.offset, starts[tp], ends[tp] - 1)
                    store = self._stores[p] = self._wipe(p, store)
                    self.recoveries += 1
                self._written[p] = max(self._written.get(p, -1), store.offset)
                if store.offset + 1 < ends[tp]:
                    consumer.seek(tp, store.offset + 1)
                    todo[tp] = ends[tp]
                else:
                    self._ready(p, ready)
            next_report = time.monotonic() + 5
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=RESTORE_CHUNK)
                for tp, records in batch.items():
                    if not records:
                        continue
                    rows: dict[bytes, bytes | None] = {}
                    for r in records:
                        rows[r.key] = r.value
                    self._stores[tps[tp]].write(rows, records[-1].offset)
                    self.sent(tps[tp], records[-1].offset)
                    applied += len(records)
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
                        self.recoveries += 1  # once per partition, as it becomes readable
                        self._ready(tps[tp], ready)
                if time.monotonic() >= next_report:
                    log.info("%s: %d changelog records applied, %d partitions to go", self.topic, applied, len(todo))
                    next_report = time.monotonic() + 5
        finally:
            await consumer.stop()
        log.info("%s: partitions %s restored (%d records, %.1f s)", self.topic, wanted, applied,
                 time.monotonic() - started)
        return applied

    @staticmethod
    def _restore_consumer(bootstrap: str):
        """A consumer outside the group, assigned the changelog partitions it reads."""
        from aiokafka import AIOKafkaConsumer

        from services.common import kafka_security

        return AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                isolation_level="read_committed",  # a fenced worker's aborted writes are not state
                                max_partition_fetch_bytes=8 * 1024 * 1024, **kafka_security.aiokafka_kwargs())

    def _ready(self, partition: int, ready: Callable[[int], None] | None) -> None:
        self.restoring.discard(partition)
        if ready is not None:
            ready(partition)

    async def recover(self, bootstrap: str, partitions: Iterable[int]) -> int:
        """``restore`` waited for as a whole."""
        return await self.restore(bootstrap, partitions)
