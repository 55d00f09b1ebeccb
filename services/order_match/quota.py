"""The buyer's annual quota (DOMAIN §3): reserved atomically when a declaration verifies.

State lives in Redis because one buyer's declarations land on any partition. One hash per
buyer and year holds the running ``total`` and one field per declaration, so a reservation
is idempotent (a redelivered declaration finds its own field and changes nothing), a
release gives back exactly what was reserved, and the total can be rebuilt from the fields.
Amounts are integers of 0.00001 CNY. ``MemoryQuotaStore`` is the same contract in a dict,
for ``sandan check`` and unit tests.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from services.common.money import from_units, to_units

_RESERVE = """
local key, decl = KEYS[1], ARGV[1]
local amount, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local total = tonumber(redis.call('HGET', key, 'total') or '0')
if redis.call('HEXISTS', key, decl) == 1 then return {1, total} end
if total + amount > limit then return {0, total} end
redis.call('HSET', key, decl, amount)
return {1, redis.call('HINCRBY', key, 'total', amount)}
"""

# ARGV[2] is the share to release ('' for all of what is left); returns the amount released.
_RELEASE = """
local key, decl = KEYS[1], ARGV[1]
local held = tonumber(redis.call('HGET', key, decl) or '-1')
if held < 0 then return 0 end
local part = held
if ARGV[2] ~= '' then part = math.min(held, tonumber(ARGV[2])) end
if part == held then redis.call('HDEL', key, decl) else redis.call('HSET', key, decl, held - part) end
redis.call('HINCRBY', key, 'total', -part)
return part
"""


class QuotaStore(Protocol):
    async def year_to_date(self, buyer_key: str, year: int) -> Decimal: ...

    async def reserve(self, decl_id: str, buyer_key: str, year: int, amount: Decimal,
                      limit: Decimal) -> tuple[bool, Decimal]: ...

    async def release(self, decl_id: str, buyer_key: str, year: int, amount: Decimal | None = None) -> Decimal: ...


def quota_key(namespace: str, buyer_key: str, year: int) -> str:
    return f"{namespace}quota:{buyer_key}:{year}"


class RedisQuotaStore:
    def __init__(self, redis, namespace: str = "sandan:") -> None:
        self._redis = redis
        self._ns = namespace
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)

    async def year_to_date(self, buyer_key: str, year: int) -> Decimal:
        total = await self._redis.hget(quota_key(self._ns, buyer_key, year), "total")
        return from_units(int(total or 0))

    async def reserve(self, decl_id, buyer_key, year, amount, limit):
        ok, total = await self._reserve(keys=[quota_key(self._ns, buyer_key, year)],
                                        args=[decl_id, to_units(amount), to_units(limit)])
        return bool(ok), from_units(int(total))

    async def release(self, decl_id, buyer_key, year, amount=None):
        part = await self._release(keys=[quota_key(self._ns, buyer_key, year)],
                                   args=[decl_id, "" if amount is None else to_units(amount)])
        return from_units(int(part))


class MemoryQuotaStore:
    def __init__(self, initial: dict[tuple[str, int], Decimal] | None = None) -> None:
        self._held: dict[tuple[str, int], dict[str, Decimal]] = {}
        self._base = dict(initial or {})

    def _total(self, key) -> Decimal:
        return self._base.get(key, Decimal(0)) + sum(self._held.get(key, {}).values(), Decimal(0))

    async def year_to_date(self, buyer_key, year):
        return self._total((buyer_key, year))

    async def reserve(self, decl_id, buyer_key, year, amount, limit):
        key = (buyer_key, year)
        held = self._held.setdefault(key, {})
        if decl_id in held:
            return True, self._total(key)
        if self._total(key) + amount > limit:
            return False, self._total(key)
        held[decl_id] = amount
        return True, self._total(key)

    async def release(self, decl_id, buyer_key, year, amount=None):
        held = self._held.get((buyer_key, year), {})
        if decl_id not in held:
            return Decimal(0)
        part = held[decl_id] if amount is None else min(amount, held[decl_id])
        held[decl_id] -= part
        if held[decl_id] == 0:
            del held[decl_id]
        return part
