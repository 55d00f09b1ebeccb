"""The buyer's annual quota (DOMAIN §3): reserved atomically when a declaration verifies.

State lives in Redis because one buyer's declarations land on any partition. One hash per
buyer and year holds the running ``total`` and one field per declaration, so a reservation
is idempotent (a redelivered declaration finds its own field and changes nothing), a
release gives back exactly what was reserved, and the total can be rebuilt from the fields.
A declaration whose reservation has all gone back (refused by the guarantee, cancelled,
returned) leaves a ``released:<declaration id>`` field: order_match may decide a declaration
again after a crash (a replay re-emits a decision whose outputs were lost), possibly after
the guarantee service already released its quota, and the replay must not take it again.
Amounts are integers of 0.00001 CNY. ``MemoryQuotaStore`` is the same contract in a dict,
for ``sandan check`` and unit tests.

``run`` takes the reservations and look-ups of a whole batch of declarations in one round
trip (a pipeline): each step is still atomic on its own and they apply in the given order,
so the outcome is what taking them one by one gives.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from services.common.money import from_units, to_units

_RESERVE = """
local key, decl = KEYS[1], ARGV[1]
local amount, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local total = tonumber(redis.call('HGET', key, 'total') or '0')
if redis.call('HEXISTS', key, decl) == 1 or redis.call('HEXISTS', key, 'released:' .. decl) == 1 then
  return {1, total}
end
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
if part == held then
  redis.call('HDEL', key, decl)
  redis.call('HSET', key, 'released:' .. decl, 1)
else
  redis.call('HSET', key, decl, held - part)
end
redis.call('HINCRBY', key, 'total', -part)
return part
"""


@dataclass(frozen=True)
class Reservation:
    """Reserve ``amount`` for the declaration if the buyer's year stays within ``limit``."""
    decl_id: str
    buyer_key: str
    year: int
    amount: Decimal
    limit: Decimal


@dataclass(frozen=True)
class Lookup:
    """The buyer's year-to-date total."""
    buyer_key: str
    year: int


QuotaStep = Reservation | Lookup
# A reservation answers (reserved, year-to-date total after it); a look-up the total.
StepResult = tuple[bool, Decimal] | Decimal


class QuotaStore(Protocol):
    async def year_to_date(self, buyer_key: str, year: int) -> Decimal: ...

    async def reserve(self, decl_id: str, buyer_key: str, year: int, amount: Decimal,
                      limit: Decimal) -> tuple[bool, Decimal]: ...

    async def release(self, decl_id: str, buyer_key: str, year: int, amount: Decimal | None = None) -> Decimal: ...

    async def run(self, steps: Sequence[QuotaStep]) -> list[StepResult]:
        """Every step in order, each atomic, in one round trip."""


def quota_key(namespace: str, buyer_key: str, year: int) -> str:
    return f"{namespace}quota:{buyer_key}:{year}"


RELEASED = "released:"  # field prefix marking a declaration whose reservation has all gone back (as in the scripts)


def released_field(decl_id: str) -> str:
    return RELEASED + decl_id


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

    async def run(self, steps):
        if not steps:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for step in steps:
            key = quota_key(self._ns, step.buyer_key, step.year)
            if isinstance(step, Reservation):
                await self._reserve(keys=[key], args=[step.decl_id, to_units(step.amount), to_units(step.limit)],
                                    client=pipe)  # queued: the pipeline answers at execute()
            else:
                pipe.hget(key, "total")
        answers = await pipe.execute()
        return [(bool(a[0]), from_units(int(a[1]))) if isinstance(step, Reservation) else from_units(int(a or 0))
                for step, a in zip(steps, answers)]


class MemoryQuotaStore:
    def __init__(self, initial: dict[tuple[str, int], Decimal] | None = None) -> None:
        self._held: dict[tuple[str, int], dict[str, Decimal]] = {}
        self._released: set[tuple[tuple[str, int], str]] = set()
        self._base = dict(initial or {})

    def _total(self, key) -> Decimal:
        return self._base.get(key, Decimal(0)) + sum(self._held.get(key, {}).values(), Decimal(0))

    async def year_to_date(self, buyer_key, year):
        return self._total((buyer_key, year))

    async def reserve(self, decl_id, buyer_key, year, amount, limit):
        key = (buyer_key, year)
        held = self._held.setdefault(key, {})
        if decl_id in held or (key, decl_id) in self._released:
            return True, self._total(key)
        if self._total(key) + amount > limit:
            return False, self._total(key)
        held[decl_id] = amount
        return True, self._total(key)

    async def run(self, steps):
        return [await self.reserve(s.decl_id, s.buyer_key, s.year, s.amount, s.limit) if isinstance(s, Reservation)
                else await self.year_to_date(s.buyer_key, s.year) for s in steps]

    async def release(self, decl_id, buyer_key, year, amount=None):
        held = self._held.get((buyer_key, year), {})
        if decl_id not in held:
            return Decimal(0)
        part = held[decl_id] if amount is None else min(amount, held[decl_id])
        held[decl_id] -= part
        if held[decl_id] == 0:
            del held[decl_id]
            self._released.add(((buyer_key, year), decl_id))
        return part


# --- releases in parts, each applied once (returns) ------------------------------------------
# A declaration's quota may come back in several parts (one per partial return). ``release``
# above is idempotent only for a full release; a partial one repeated would give back twice.
# Here each part has an id, remembered in a set next to the quota hash and checked in the same
# script, so a redelivered part changes nothing. Returns -1 for a part already applied.
_RELEASE_PART = """
local key, parts = KEYS[1], KEYS[2]
local decl, part = ARGV[1], ARGV[2]
if redis.call('SADD', parts, part) == 0 then return -1 end
redis.call('EXPIRE', parts, tonumber(ARGV[4]))
local held = tonumber(redis.call('HGET', key, decl) or '-1')
if held < 0 then return 0 end
local share = math.min(held, tonumber(ARGV[3]))
if share == held then
  redis.call('HDEL', key, decl)
  redis.call('HSET', key, 'released:' .. decl, 1)
else
  redis.call('HSET', key, decl, held - share)
end
redis.call('HINCRBY', key, 'total', -share)
return share
"""
PART_MEMORY_S = 400 * 24 * 3600  # longer than any quota year a part could still apply to


class PartReleases(Protocol):
    async def release_part(self, decl_id: str, part_id: str, buyer_key: str, year: int,
                           amount: Decimal) -> Decimal | None:
        """Give ``amount`` of the declaration's reservation back once per ``part_id``;
        returns the amount given back, or None when the part was applied before."""


def parts_key(namespace: str, decl_id: str) -> str:
    return f"{namespace}quota-parts:{decl_id}"


class RedisPartReleases:
    def __init__(self, redis, namespace: str = "sandan:", memory_s: int = PART_MEMORY_S) -> None:
        self._ns = namespace
        self._memory = memory_s
        self._script = redis.register_script(_RELEASE_PART)

    async def release_part(self, decl_id, part_id, buyer_key, year, amount):
        given = int(await self._script(keys=[quota_key(self._ns, buyer_key, year), parts_key(self._ns, decl_id)],
                                       args=[decl_id, part_id, to_units(amount), self._memory]))
        return None if given < 0 else from_units(given)


class MemoryPartReleases:
    """The same contract over a ``MemoryQuotaStore``."""

    def __init__(self, store: MemoryQuotaStore) -> None:
        self._store = store
        self._done: set[tuple[str, str]] = set()

    async def release_part(self, decl_id, part_id, buyer_key, year, amount):
        if (decl_id, part_id) in self._done:
            return None
        self._done.add((decl_id, part_id))
        return await self._store.release(decl_id, buyer_key, year, amount)
