"""WAYBILL_REUSED: one carrier's waybill number may name only one orderNo within 6 months.

Waybills of different orders sit on different partitions, so the registry is in Redis:
``SET key orderNo NX EX 6 months`` claims a number atomically, and a claim by the same
order again is a no-op (redelivery). ``MemoryWaybillRegistry`` is the offline twin.
``claim_many`` claims in one round trip, in order: first the numbers the inventories taken
since the last decisions name (the first orderNo whose inventory names a number holds it,
whatever its declaration's verdict), then those of the declarations being decided, whose
answer says whether another orderNo holds theirs (WAYBILL_REUSED).

A claim carries the time of its declaration (the inventory's ``appTime``): Redis counts the six
months from when it takes the claim, the offline twin, which has no "now", from that time.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.common.clock import parse_app_time

SIX_MONTHS_S = 183 * 24 * 3600


Claim = tuple[str, str, str, str]  # logisticsCode, logisticsNo, orderNo, the inventory's appTime


class WaybillRegistry(Protocol):
    async def claim(self, logistics_code: str, logistics_no: str, order_no: str, app_time: str = "") -> str | None:
        """Claim the number for ``order_no``; returns the *other* orderNo holding it, if any."""

    async def claim_many(self, claims: Sequence[Claim]) -> list[str | None]:
        """``claim`` for each, in order."""


class RedisWaybillRegistry:
    def __init__(self, redis, namespace: str = "sandan:", ttl_s: int = SIX_MONTHS_S) -> None:
        self._redis = redis
        self._ns = namespace
        self._ttl = ttl_s

    async def claim(self, logistics_code, logistics_no, order_no, app_time=""):
        return (await self.claim_many([(logistics_code, logistics_no, order_no, app_time)]))[0]

    async def claim_many(self, claims):
        if not claims:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for code, number, order_no, _ in claims:
            key = f"{self._ns}waybill:{code}:{number}"
            pipe.set(key, order_no, nx=True, ex=self._ttl)
            pipe.get(key)  # after a refused SET: who holds it
        answers = await pipe.execute()
        holders = []
        for (_, _, order_no, _), claimed, holder in zip(claims, answers[::2], answers[1::2]):
            holder = holder.decode() if isinstance(holder, bytes) else holder
            holders.append(None if claimed or holder in (None, order_no) else holder)
        return holders


class MemoryWaybillRegistry:
    """Offline, claims are answered as of their own time: ``sandan check`` takes every inventory
    (claiming in order of application) before it decides, so a declaration's claim at its
    decision may come after a later claim of the same number, once the first had run out."""

    def __init__(self, ttl_s: int = SIX_MONTHS_S) -> None:
        # per number: (orderNo, claimed at, s) in time order; a claim without a time comes first
        self._held: dict[tuple[str, str], list[tuple[str, float | None]]] = {}
        self._ttl = ttl_s

    async def claim(self, logistics_code, logistics_no, order_no, app_time=""):
        at = _seconds(app_time)
        claims = self._held.setdefault((logistics_code, logistics_no), [])
        before = [c for c in claims if at is None or c[1] is None or c[1] <= at]
        held = before[-1] if before else None
        if held is None or (at is not None and held[1] is not None and at - held[1] >= self._ttl):
            claims.append((order_no, at))  # free then, or the claim before had run out
            claims.sort(key=lambda c: (c[1] is not None, c[1] or 0.0))
            return None
        return None if held[0] == order_no else held[0]

    async def claim_many(self, claims):
        return [await self.claim(*c) for c in claims]


def _seconds(app_time: str) -> float | None:
    try:
        return parse_app_time(app_time).timestamp()
    except (ValueError, AttributeError):
        return None  # no usable time: the claim never runs out
