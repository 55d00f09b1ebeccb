"""When each piece of state next needs the clock, per partition (the stream's expiry schedule).

A min-heap per partition of (when, table, key). Entries are never updated in place: a key
pushed again simply appears twice and the earlier wake finds nothing due, which is cheap and
keeps the schedule correct without bookkeeping. After a rebalance the schedule is rebuilt
from the tables of the partitions now owned.
"""
from __future__ import annotations

import heapq


class Wakeups:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str, str]]] = {}
        self.partitions: frozenset[int] = frozenset()

    def reset(self, partitions: frozenset[int]) -> None:
        self._heaps.clear()
        self.partitions = partitions

    def push(self, partition: int, when: int, table: str, key: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (when, table, key))

    def due(self, partition: int, now_ms: int) -> list[tuple[str, str]]:
        """The (table, key) pairs due on a partition, each once, removed from the schedule."""
        heap = self._heaps.get(partition, [])
        found: dict[tuple[str, str], None] = {}
        while heap and heap[0][0] <= now_ms:
            _, table, key = heapq.heappop(heap)
            found[(table, key)] = None
        return list(found)

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
