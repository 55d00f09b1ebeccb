"""Rebuilding the buyers' annual quotas (DOMAIN §3) from Kafka, the source of truth.

A quota hash in Redis (``quota.py``) holds one field per declaration that still counts (its
taxable value P, or what partial returns left of it), their ``total``, and a ``released:``
mark for each declaration whose reservation has all gone back. Kafka says the same thing in
three places:

- ``declarations.verdicts``: every verified declaration reserved its P (``buyerKey``,
  ``quotaYear``, ``taxableValue``);
- ``declarations.refused``: the guarantee service refused it and released all of it;
- the returns service's table changelog (``returns-buckets``): a cancellation released all
  of it, each completed return request the part recorded as its ``quotaRestored``
  (applied once per part id ``return:<CEB625 guid>``).

So ``rebuild`` = verified − refused − cancelled − returned parts, per buyer and year, and
``compare`` says where Redis differs. Pure; ``RedisQuotaHashes`` and ``read_sources`` are
the adapters used by ``sandan quota rebuild``.

Limit: a rebuild is only as complete as the topics. Records past a topic's retention are
gone, and with them the declarations they reserved; ``Sources.truncated`` names such
topics, and a repair is then refused rather than dropping quota that still counts.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from services.common.money import ZERO, from_units, to_units
from services.order_match.quota import PART_MEMORY_S, RELEASED, parts_key, quota_key, released_field

TOTAL = "total"
QuotaId = tuple[str, int]  # (buyer key, year)


@dataclass
class QuotaHash:
    held: dict[str, Decimal] = field(default_factory=dict)  # declaration -> what it still holds
    released: set[str] = field(default_factory=set)         # declarations whose reservation all went back
    total: Decimal | None = None                            # as stored (None: no total field)


@dataclass
class Rebuilt:
    quotas: dict[QuotaId, QuotaHash] = field(default_factory=dict)
    parts: dict[str, set[str]] = field(default_factory=dict)  # declaration -> return parts applied
    problems: list[str] = field(default_factory=list)         # the topics contradict themselves


@dataclass(frozen=True)
class Difference:
    buyer_key: str  # the keyed hash, never the ID number
    year: int
    subject: str    # a declaration id, "released:<id>", "total", or "hash"
    redis: str
    rebuilt: str


def rebuild(verified: Iterable[dict], refused: Iterable[dict], returns_buckets: Iterable[dict]) -> Rebuilt:
    """What every quota hash should hold. Records may repeat (at-least-once) and come in any order."""
    out = Rebuilt()
    owner: dict[str, QuotaId] = {}
    for verdict in verified:
        if verdict.get("status") != "verified" or not verdict.get("buyerKey") or verdict.get("quotaYear") is None:
            continue
        decl, amount = verdict["declarationId"], verdict["taxableValue"]
        quota = out.quotas.setdefault((verdict["buyerKey"], verdict["quotaYear"]), QuotaHash())
        if decl in quota.held and quota.held[decl] != amount:
            out.problems.append(f"{decl}: verified twice with different taxable values ({quota.held[decl]}, {amount})")
        quota.held[decl] = amount
        owner[decl] = (verdict["buyerKey"], verdict["quotaYear"])
    for verdict in refused:
        _release(out, owner, verdict["declarationId"], None)
    for bucket in returns_buckets:
        for decl in bucket["declarations"]:
            decl_id = decl["declarationId"]
            if decl["cancelledAt"] is not None:
                _release(out, owner, decl_id, None)
            for request in decl["requests"]:
                if request["status"] == "completed" and request["quotaRestored"] > ZERO:
                    out.parts.setdefault(decl_id, set()).add(f"return:{request['guid']}")
                    _release(out, owner, decl_id, request["quotaRestored"])
    for quota in out.quotas.values():
        quota.total = sum(quota.held.values(), ZERO)
    return out


def _release(out: Rebuilt, owner: dict[str, QuotaId], decl: str, amount: Decimal | None) -> None:
    """The arithmetic of the release scripts in ``quota.py``: never below zero, a declaration
    that has given everything back is marked released, one that holds nothing gives nothing."""
    quota = out.quotas.get(owner.get(decl))
    if quota is None or decl not in quota.held:
        return
    share = quota.held[decl] if amount is None else min(amount, quota.held[decl])
    quota.held[decl] -= share
    if quota.held[decl] == ZERO:
        del quota.held[decl]
        quota.released.add(decl)


def compare(rebuilt: Rebuilt, found: dict[QuotaId, QuotaHash]) -> list[Difference]:
    """Where Redis (``found``, as ``RedisQuotaHashes.read_all`` gives it) differs from the rebuild."""
    diffs: list[Difference] = []
    for quota_id in sorted(set(rebuilt.quotas) | set(found)):
        buyer, year = quota_id
        want, have = rebuilt.quotas.get(quota_id, QuotaHash(total=ZERO)), found.get(quota_id)
        if have is None:
            diffs.append(Difference(buyer, year, "hash", "missing",
                                    f"{len(want.held)} declarations, {len(want.released)} released"))
            continue
        for decl in sorted(set(want.held) | set(have.held)):
            if want.held.get(decl) != have.held.get(decl):
                diffs.append(Difference(buyer, year, decl, _text(have.held.get(decl)), _text(want.held.get(decl))))
        for decl in sorted(want.released ^ have.released):
            diffs.append(Difference(buyer, year, released_field(decl), _mark(decl in have.released),
                                    _mark(decl in want.released)))
        if (have.total or ZERO) != want.total:
            diffs.append(Difference(buyer, year, TOTAL, _text(have.total), str(want.total)))
    return diffs


def _text(amount: Decimal | None) -> str:
    return "absent" if amount is None else str(amount)


def _mark(present: bool) -> str:
    return "present" if present else "absent"


# --- adapters -------------------------------------------------------------------------------

def _glob(text: str) -> str:
    """``text`` with Redis glob specials escaped, for SCAN patterns."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def hash_of(fields: dict[str, int]) -> QuotaHash:
    """A quota hash from its raw fields (integers of 0.00001 CNY)."""
    out = QuotaHash()
    for name, units in fields.items():
        if name == TOTAL:
            out.total = from_units(units)
        elif name.startswith(RELEASED):
            out.released.add(name[len(RELEASED):])
        else:
            out.held[name] = from_units(units)
    return out


class RedisQuotaHashes:
    """The quota hashes of one namespace, read and (with the workers stopped) rewritten."""

    def __init__(self, redis, namespace: str) -> None:
        self._redis = redis
        self._ns = namespace
        self._prefix = quota_key(namespace, "", 0).removesuffix(":0")  # "<ns>quota:", followed by buyer:year

    async def read_all(self) -> dict[QuotaId, QuotaHash]:
        keys = [k.decode() async for k in self._redis.scan_iter(match=_glob(self._prefix) + "*", count=1000)]
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        found = {}
        for key, fields in zip(keys, await pipe.execute()):
            buyer, _, year = key[len(self._prefix):].rpartition(":")
            found[(buyer, int(year))] = hash_of({k.decode(): int(v) for k, v in fields.items()})
        return found

    async def restore(self, rebuilt: Rebuilt, quotas: Iterable[QuotaId]) -> None:
        """Write the rebuilt hashes of ``quotas`` and every declaration's applied return parts."""
        pipe = self._redis.pipeline(transaction=True)
        for buyer, year in quotas:
            key = quota_key(self._ns, buyer, year)
            quota = rebuilt.quotas.get((buyer, year), QuotaHash(total=ZERO))
            pipe.delete(key)
            if quota.held or quota.released:
                fields = {decl: to_units(amount) for decl, amount in quota.held.items()}
                marks = {released_field(decl): 1 for decl in quota.released}
                pipe.hset(key, mapping={**fields, **marks, TOTAL: sum(fields.values())})
        for decl, parts in rebuilt.parts.items():
            pipe.sadd(parts_key(self._ns, decl), *sorted(parts))
            pipe.expire(parts_key(self._ns, decl), PART_MEMORY_S)
        await pipe.execute()


@dataclass
class Sources:
    verified: list[dict]
    refused: list[dict]
    returns_buckets: list[dict]
    records: int
    truncated: list[str]  # topics whose oldest records retention has already deleted


def returns_changelog() -> str:
    """faust names a table's changelog ``<app id>-<table>-changelog`` (table: services/returns/app.py)."""
    from services.common.streaming import app_id

    return f"{app_id('returns')}-returns-buckets-changelog"


def read_sources(timeout_s: float) -> Sources:
    """Every verdict, refusal and current returns state on Kafka (blocking; for the command line)."""
    from services.common import kafka_io, topics
    from services.common.avro import codec

    wire = codec()
    names = [topics.name("declarations.verdicts"), topics.name("declarations.refused"), returns_changelog()]
    raw = {name: kafka_io.read_all(name, timeout_s=timeout_s) for name in names}
    decoded = {name: [wire.decode(r.value)[1] for r in records if r.value is not None]
               for name, records in raw.items()}
    latest: dict[bytes, bytes | None] = {}
    for r in raw[names[2]]:  # a compacted changelog: the last value of a key is the state, None deletes it
        latest[r.key] = r.value
    buckets = [wire.decode(value)[1] for value in latest.values() if value is not None]
    return Sources(decoded[names[0]], decoded[names[1]], buckets, sum(map(len, raw.values())),
                   [name for name in names if _truncated(name)])


def _truncated(topic: str) -> bool:
    from kafka import KafkaConsumer, TopicPartition

    from services.common import kafka_io

    consumer = KafkaConsumer(bootstrap_servers=kafka_io.bootstrap(), group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        return any(offset > 0 for offset in consumer.beginning_offsets(parts).values())
    finally:
        consumer.close()
