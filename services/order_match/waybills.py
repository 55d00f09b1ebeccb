"""WAYBILL_REUSED: one carrier's waybill number may name only one orderNo within 6 months.

Waybills of different orders sit on different partitions, so the registry is in Redis:
``SET key orderNo NX GET PXAT <six months on>`` claims a number atomically and answers who
held it before (one command; Redis 7.0 or later), and a claim by the same order again is a
no-op (redelivery). ``MemoryWaybillRegistry`` is the offline twin.
``claim_many`` claims in one round trip, in order: first the numbers the inventories taken
since the last decisions name (the first orderNo whose inventory names a number holds it,
whatever its declaration's verdict), then those of the declarations being decided, whose
answer says whether another orderNo holds theirs (WAYBILL_REUSED).

Six months are calendar months in China time (1 March 10:03 holds until 1 September 10:03;
31 August until the end of February), counted from the claim's time: when its inventory
reached Kafka (the broker's clock, not the worker's), or offline, where there is no arrival,
from the inventory's ``appTime``.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.common.clock import CHINA, months_after, months_after_ms, now_ms, parse_app_time

HELD_MONTHS = 6

# logisticsCode, logisticsNo, orderNo, the inventory's appTime, when it reached Kafka (None offline)
Claim = tuple[str, str, str, str, "int | None"]


class WaybillRegistry(Protocol):
    async def claim(self, logistics_code: str, logistics_no: str, order_no: str, app_time: str = "",
                    at_ms: int | None = None) -> str | None:
        """Claim the number for ``order_no``; returns the *other* orderNo holding it, if any."""

    async def claim_many(self, claims: Sequence[Claim]) -> list[str | None]:
        """``claim`` for each, in order."""


class RedisWaybillRegistry:
    def __init__(self, redis, namespace: str = "sandan:") -> None:
        self._redis = redis
        self._ns = namespace

    async def claim(self, logistics_code, logistics_no, order_no, app_time="", at_ms=None):
        return (await self.claim_many([(logistics_code, logistics_no, order_no, app_time, at_ms)]))[0]

    async def claim_many(self, claims):
        if not claims:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for code, number, order_no, _, at_ms in claims:
            # the answer is the holder before: None when this SET took the number. A claim already
            # six months old (a replay of old input) expires at once: it holds nothing
            pipe.set(f"{self._ns}waybill:{code}:{number}", order_no, nx=True, get=True,
                     pxat=months_after_ms(now_ms() if at_ms is None else at_ms, HELD_MONTHS))
        holders = []
        for (_, _, order_no, _, _), holder in zip(claims, await pipe.execute()):
            holder = holder.decode() if isinstance(holder, bytes) else holder
            holders.append(None if holder in (None, order_no) else holder)
        return holders


class MemoryWaybillRegistry:
    """Claims are answered as of their own time, so the answer does not depend on the order in
    which claims of different times come in."""

    def __init__(self) -> None:
        # per number: (orderNo, claimed at) in time order; a claim without a time comes first
        self._held: dict[tuple[str, str], list[tuple[str, datetime | None]]] = {}

    async def claim(self, logistics_code, logistics_no, order_no, app_time="", at_ms=None):
        at = _moment(app_time) if at_ms is None else datetime.fromtimestamp(at_ms / 1000, CHINA)
        claims = self._held.setdefault((logistics_code, logistics_no), [])
        before = [c for c in claims if at is None or c[1] is None or c[1] <= at]
        held = before[-1] if before else None
        if held is None or (at is not None and held[1] is not None and at >= months_after(held[1], HELD_MONTHS)):
            claims.append((order_no, at))  # free then, or the claim before had run out
            claims.sort(key=lambda c: (c[1] is not None, c[1] or datetime.min.replace(tzinfo=CHINA)))
            return None
        return None if held[0] == order_no else held[0]

    async def claim_many(self, claims):
        return [await self.claim(*c) for c in claims]


def _moment(app_time: str) -> datetime | None:
    try:
        return parse_app_time(app_time)
    except (ValueError, AttributeError):
        return None  # no usable time: the claim never runs out
