"""Per-client token buckets: each call and each submitted item costs one token.

Integer arithmetic on nanoseconds (a bucket holds ``tokens × 10⁹`` units), so refills are
exact and nothing drifts; the clock is injected so tests step it by hand.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.gateway.errors import RESOURCE_EXHAUSTED, CallError

_UNIT = 1_000_000_000  # bucket units per token; refill is `rate` units per nanosecond


@dataclass
class _Bucket:
    units: int
    at_ns: int


class RateLimiter:
    def __init__(self, rate_per_second: int, burst: int, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if rate_per_second <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate_per_second
        self.capacity = burst * _UNIT
        self.clock_ns = clock_ns
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client_id: str) -> None:
        """Spend one token of ``client_id`` or raise RESOURCE_EXHAUSTED saying when to retry."""
        now = self.clock_ns()
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = _Bucket(self.capacity, now)
        bucket.units = min(self.capacity, bucket.units + (now - bucket.at_ns) * self.rate)
        bucket.at_ns = now
        if bucket.units < _UNIT:
            wait_ms = -(-(_UNIT - bucket.units) // (self.rate * 1_000_000))  # ceiling division
            raise CallError(RESOURCE_EXHAUSTED, f"rate limit of {self.rate} calls and items per second for client "
                                                f"{client_id} exceeded; retry in {wait_ms} ms")
        bucket.units -= _UNIT
