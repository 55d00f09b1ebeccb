"""Reading a task's co-partitioned inputs in step, by record time (no I/O here: the worker pauses).

A declaration's four documents come on four topics, and with a backlog one topic is read ahead of
another (fetches are sized in bytes, and a payment is half the size of an order): its documents
then wait in their buckets while the others come later, so a bucket is read, decoded and written
once per document and not once per declaration, and the documents decoded on arrival have left
memory when the declaration is decided. Kafka Streams picks a task's next record by timestamp
across its partitions for the same reason.

An input partition whose last record read is more than ``skew_ms`` of record time ahead of another
input of the same task that is still catching up is held (paused) until it is at most half that
ahead. Catching up: it has a backlog (the worker counts more than a batch of records left to
read; under a steady load no partition has one, so nothing waits) and it delivered records in
the last ``lively_s`` seconds. A partition just made readable (``started``) that has a backlog and has brought
nothing yet counts as behind everything, for ``lively_s``: otherwise the first fetch of another
(a megabyte of small records) would all be handled before its first record is seen. So a
partition that is idle, at its end, or stuck holds no other for longer than ``lively_s``, and
nothing ever waits for a partition that is not being read.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Hashable

LIVELY_S = 1.0


class Alignment:
    """``topics``: the inputs read in step. Partitions are keyed by anything with ``.topic`` and
    ``.partition`` (aiokafka's TopicPartition)."""

    def __init__(self, topics: Iterable[str], skew_ms: int, lively_s: float = LIVELY_S) -> None:
        self.topics = frozenset(topics)
        self.skew_ms, self.lively_s = skew_ms, lively_s
        self.read_ms: dict[Hashable, int] = {}   # record time of the last record handled
        self.fed_at: dict[Hashable, float] = {}  # when records last came from it (monotonic s)
        self.held: frozenset = frozenset()

    def read(self, tp, last_record_ms: int | None, now_s: float) -> None:
        """Records of ``tp`` were handled; the last one has ``last_record_ms`` as its time."""
        if tp.topic not in self.topics or last_record_ms is None or last_record_ms < 0:
            return
        self.read_ms[tp] = last_record_ms
        self.fed_at[tp] = now_s

    def started(self, tps: Iterable, now_s: float) -> None:
        """``tps`` became readable now (assigned, stores restored); their record time is not known yet."""
        for tp in tps:
            if tp.topic in self.topics and tp not in self.read_ms:
                self.fed_at[tp] = now_s

    def forget(self, tps: Iterable | None = None) -> None:
        """Partitions no longer owned (all: None); their positions say nothing about the next owner's."""
        if tps is None:
            self.read_ms.clear()
            self.fed_at.clear()
            self.held = frozenset()
            return
        for tp in tps:
            self.read_ms.pop(tp, None)
            self.fed_at.pop(tp, None)
        self.held = self.held - frozenset(tps)

    def to_hold(self, owned: Iterable, has_more: Callable[[object], bool], now_s: float) -> frozenset:
        """The partitions of ``owned`` to hold now (the rest may be read); remembered for hysteresis.
        ``has_more(tp)``: whether ``tp`` has a backlog (see the module docstring)."""
        tasks: dict[int, list] = {}
        for tp in owned:
            if tp.topic in self.topics and tp in self.fed_at:
                tasks.setdefault(tp.partition, []).append(tp)
        held = set()
        for tps in tasks.values():
            if len(tps) < 2:
                continue
            catching_up = [tp for tp in tps if now_s - self.fed_at[tp] <= self.lively_s and has_more(tp)]
            if not catching_up:
                continue
            if any(tp not in self.read_ms for tp in catching_up):  # started, not read yet: behind all
                held.update(tp for tp in tps if tp in self.read_ms)
                continue
            slowest = min(self.read_ms[tp] for tp in catching_up)
            for tp in tps:
                limit = self.skew_ms // 2 if tp in self.held else self.skew_ms
                if tp in self.read_ms and self.read_ms[tp] - slowest > limit:
                    held.add(tp)
        self.held = frozenset(held)
        return self.held
