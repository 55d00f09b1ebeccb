"""Which cleared declarations the gateway has delivered to customs: what a Report may be about.

Redis sets under the deployment's namespace, one per China day of delivery, shared by every
gateway on the same Redis and kept across restarts; each day's set expires after
``SANDAN_GATEWAY_REPORT_WINDOW_DAYS``, so the index holds a bounded window (about 60 bytes a
declaration) instead of growing for ever, and a report on a declaration delivered before the
window is refused like an unknown one. Members are the first 12 bytes of the BLAKE2b digest of
the declaration id (``ebpCode:orderNo``): a fixed, small member whatever the ids' length, and no
enterprise or order numbers in the key space. A collision could only let one report about a
non-delivered declaration through (odds of 2^-96 per pair); it can never refuse a delivered one.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Protocol

from services.common import config
from services.common.clock import CHINA

_DIGEST_BYTES = 12
_DAY_S = 86400


class DeliveredIndex(Protocol):
    async def add(self, declaration_ids: Iterable[str]) -> None: ...

    async def contains(self, declaration_id: str) -> bool: ...


def member(declaration_id: str) -> bytes:
    return hashlib.blake2b(declaration_id.encode(), digest_size=_DIGEST_BYTES).digest()


def day_key(day: int) -> str:
    """The set of one China day (days since the epoch, China time)."""
    return f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}gateway:delivered:{day}"


def china_day(now_s: float) -> int:
    return int((now_s + CHINA.utcoffset(None).total_seconds()) // _DAY_S)


class RedisDelivered:
    def __init__(self, redis, *, window_days: int | None = None, clock=time.time) -> None:
        self.redis, self.clock = redis, clock
        self.window_days = window_days if window_days is not None else config.get_int("SANDAN_GATEWAY_REPORT_WINDOW_DAYS")

    async def add(self, declaration_ids: Iterable[str]) -> None:
        members = {member(d) for d in declaration_ids}
        if members:
            key = day_key(china_day(self.clock()))
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(key, *members)
                # a day's set lives the whole window after its last addition
                pipe.expire(key, (self.window_days + 1) * _DAY_S)
                await pipe.execute()

    async def contains(self, declaration_id: str) -> bool:
        today, found = china_day(self.clock()), member(declaration_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in range(today - self.window_days, today + 1):
                pipe.sismember(day_key(day), found)
            return any(await pipe.execute())


class MemoryDelivered:
    """The same index in this process only (tests; a gateway without Redis would forget on restart)."""

    def __init__(self) -> None:
        self.members: set[bytes] = set()

    async def add(self, declaration_ids: Iterable[str]) -> None:
        self.members.update(member(d) for d in declaration_ids)

    async def contains(self, declaration_id: str) -> bool:
        return member(declaration_id) in self.members
