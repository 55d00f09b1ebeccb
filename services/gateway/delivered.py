"""Which cleared declarations the gateway has delivered to customs: what a Report may be about.

A Redis set under the deployment's namespace, shared by every gateway on the same Redis
and kept across restarts. Members are the first 12 bytes of the BLAKE2b digest of the
declaration id (``ebpCode:orderNo``), not the id: a fixed, small member whatever the ids'
length (about 60 bytes a declaration in Redis), and no enterprise or order numbers in the
key space. A collision could only let one report about a non-delivered declaration through
(odds of 2^-96 per pair); it can never refuse a delivered one.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol

from services.common import config

_DIGEST_BYTES = 12


class DeliveredIndex(Protocol):
    async def add(self, declaration_ids: Iterable[str]) -> None: ...

    async def contains(self, declaration_id: str) -> bool: ...


def member(declaration_id: str) -> bytes:
    return hashlib.blake2b(declaration_id.encode(), digest_size=_DIGEST_BYTES).digest()


def key() -> str:
    return f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}gateway:delivered"


class RedisDelivered:
    def __init__(self, redis) -> None:
        self.redis, self.key = redis, key()

    async def add(self, declaration_ids: Iterable[str]) -> None:
        members = {member(d) for d in declaration_ids}
        if members:
            await self.redis.sadd(self.key, *members)

    async def contains(self, declaration_id: str) -> bool:
        return bool(await self.redis.sismember(self.key, member(declaration_id)))


class MemoryDelivered:
    """The same index in this process only (tests; a gateway without Redis would forget on restart)."""

    def __init__(self) -> None:
        self.members: set[bytes] = set()

    async def add(self, declaration_ids: Iterable[str]) -> None:
        self.members.update(member(d) for d in declaration_ids)

    async def contains(self, declaration_id: str) -> bool:
        return member(declaration_id) in self.members
