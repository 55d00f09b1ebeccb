"""When each bucket next needs the worker (an expiry, verified documents to drop, the end
of its retention), per partition, in little memory.

A bucket is indexed under the second it wakes up (rounded up, so it never comes up early);
the order numbers of one second share one ``bytearray``: about 25 bytes per entry where a
heap of ``(time, orderNo)`` tuples takes about 170. Entries are never taken out early: a
bucket that comes up and is not due any more is simply re-read and indexed again, which is
also why the caller indexes a bucket only when its wake-up time changes.
"""
from __future__ import annotations

import heapq


class Wakeups:
    def __init__(self) -> None:
        self._seconds: dict[int, list[int]] = {}           # partition -> heap of seconds with entries
        self._keys: dict[int, dict[int, bytearray]] = {}    # partition -> second -> packed order numbers
        self._count = 0

    def add(self, partition: int, wake_ms: int, key: str) -> None:
        second = -(-wake_ms // 1000)
        slots = self._keys.setdefault(partition, {})
        packed = slots.get(second)
        if packed is None:
            packed = slots[second] = bytearray()
            heapq.heappush(self._seconds.setdefault(partition, []), second)
        raw = key.encode()
        packed += len(raw).to_bytes(2, "big") + raw
        self._count += 1

    def due(self, partition: int, now_ms: int) -> list[str]:
        """Every key of the partition whose wake-up time has come (taken out), each once."""
        heap = self._seconds.get(partition, [])
        slots = self._keys.get(partition, {})
        found: dict[str, None] = {}
        while heap and heap[0] * 1000 <= now_ms:
            packed = slots.pop(heapq.heappop(heap))
            at = 0
            while at < len(packed):
                size = int.from_bytes(packed[at:at + 2], "big")
                found[packed[at + 2:at + 2 + size].decode()] = None
                at += 2 + size
                self._count -= 1
        return list(found)

    def earliest_ms(self) -> int | None:
        """The first wake-up time of any partition (None when nothing is indexed)."""
        firsts = [heap[0] for heap in self._seconds.values() if heap]
        return min(firsts) * 1000 if firsts else None

    def clear(self) -> None:
        self._seconds.clear()
        self._keys.clear()
        self._count = 0

    def __len__(self) -> int:
        return self._count
