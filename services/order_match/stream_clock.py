"""The time up to which a partition's documents have been read: when its declarations may expire.

A declaration is INCOMPLETE when its four documents did not all *arrive* (enter Kafka) within
the match timeout. Expiry by the wall clock alone is wrong whenever the worker is behind: after
an outage, the tick that comes first would expire a declaration whose last documents arrived in
time and wait, unread, in the backlog. So expiry follows the documents' own time: per partition,
the oldest of the newest arrival times read on each document topic (a low watermark). A topic
that has had nothing to read for ``idle_ms`` is taken as caught up and does not hold the clock
back (else one quiet topic would stop expiry for good); a topic not seen since the partition was
assigned holds it back for ``idle_ms`` first, so a backlog has time to show. "Nothing to read
for idle_ms" is the worker's own elapsed time (monotonic): not the broker's time as far as it has
been read, which stands still while a backlog is read (a topic read a moment ago would look idle
to the first tick after an outage, and the clock jump to the tick past declarations whose last
documents wait unread), nor the wall clock, which may be stepped.
"""
from __future__ import annotations

import time


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class StreamClock:
    def __init__(self, topics: tuple[str, ...], idle_ms: int) -> None:
        self.topics, self.idle_ms = topics, idle_ms
        # (topic, partition) -> newest arrival read (broker ms), when last read (monotonic ms)
        self._read: dict[tuple[str, int], tuple[int, int]] = {}
        self._last: dict[int, int] = {}  # partition -> the clock last given (it never goes back)

    def read(self, topic: str, partition: int, arrived_ms: int, seen_ms: int) -> None:
        """A document that entered Kafka at ``arrived_ms`` was read at ``seen_ms`` (monotonic)."""
        held = self._read.get((topic, partition))
        self._read[(topic, partition)] = (max(arrived_ms, held[0]) if held else arrived_ms, seen_ms)

    def now(self, partition: int, broker_ms: int, seen_ms: int) -> int:
        """Up to when every document of the partition has been read (at most ``broker_ms``, the
        broker's time as far as read), asked at ``seen_ms`` (monotonic)."""
        clock = broker_ms
        for topic in self.topics:
            held = self._read.get((topic, partition))
            if held is None:  # not seen since assignment: wait a little for a backlog to show
                held = self._read[(topic, partition)] = (0, seen_ms)
            newest, read_at = held
            if seen_ms - read_at < self.idle_ms:
                clock = min(clock, newest)
        clock = max(clock, self._last.get(partition, 0))
        self._last[partition] = clock
        return clock

    def forget(self) -> None:
        """Partitions were reassigned: what was read before says nothing about their backlog now."""
        self._read.clear()
        self._last.clear()
