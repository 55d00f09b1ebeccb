"""WAYBILL_REUSED: one carrier's waybill number may name only one orderNo within 6 months.

Waybills of different orders sit on different partitions, so the registry is in Redis:
``SET key orderNo NX EX 6 months`` claims a number atomically, and a claim by the same
order again is a no-op (redelivery). ``MemoryWaybillRegistry`` is the offline twin.
"""
from __future__ import annotations

from typing import Protocol

SIX_MONTHS_S = 183 * 24 * 3600


class WaybillRegistry(Protocol):
    async def claim(self, logistics_code: str, logistics_no: str, order_no: str) -> str | None:
        """Claim the number for ``order_no``; returns the *other* orderNo holding it, if any."""


class RedisWaybillRegistry:
    def __init__(self, redis, namespace: str = "sandan:", ttl_s: int = SIX_MONTHS_S) -> None:
        self._redis = redis
        self._ns = namespace
        self._ttl = ttl_s

    async def claim(self, logistics_code, logistics_no, order_no):
        key = f"{self._ns}waybill:{logistics_code}:{logistics_no}"
        if await self._redis.set(key, order_no, nx=True, ex=self._ttl):
            return None
        holder = await self._redis.get(key)
        holder = holder.decode() if isinstance(holder, bytes) else holder
        return None if holder in (None, order_no) else holder


class MemoryWaybillRegistry:
    def __init__(self) -> None:
        self._held: dict[tuple[str, str], str] = {}

    async def claim(self, logistics_code, logistics_no, order_no):
        holder = self._held.setdefault((logistics_code, logistics_no), order_no)
        return None if holder == order_no else holder
