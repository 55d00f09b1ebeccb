"""Rebuilding the buyers' annual quotas (DOMAIN §3) from Kafka, the source of truth.

A quota hash in Redis holds one field per declaration that still counts (its taxable value
P, or what partial returns left of it) and their ``total`` (``quota.py``). Kafka says the
same thing in three places:

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
from services.order_match.quota import PART_MEMORY_S, parts_key, quota_key

TOTAL = "total"
QuotaId = tuple[str, int]  # (buyer key, year)


@dataclass
class Rebuilt:
    held: dict[QuotaId, dict[str, Decimal]] = field(default_factory=dict)  # what each declaration still holds
    parts: dict[str, set[str]] = field(default_factory=dict)               # declaration -> return parts applied
    problems: list[str] = field(default_factory=list)                      # the topics contradict themselves


@dataclass(frozen=True)
class Difference:
    buyer_key: str  # the keyed hash, never the ID number
    year: int
    subject: str    # a declaration id, "total", or "hash"
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
        quota = (verdict["buyerKey"], verdict["quotaYear"])
        held = out.held.setdefault(quota, {})
        if decl in held and held[decl] != amount:
            out.problems.append(f"{decl}: verified twice with different taxable values ({held[decl]}, {amount})")
        held[decl] = amount
        owner[decl] = quota
    for verdict in refused:
        _release(out, owner, verdict["declarationId"], None)
    for bucket in returns_buckets:
        for decl in bucket["declarations"]:
            decl_id = decl["declarationId"]
            if decl["cancelledAt"] is not None:
                _release(out, owner, decl_id, None)
            for request in decl["requests"]:
                if request["status"] == "completed" and request["quotaRestored"] > ZERO:
                    part = f"return:{request['guid']}"
                    out.parts.setdefault(decl_id, set()).add(part)
                    _release(out, owner, decl_id, request["quotaRestored"])
    for quota in [q for q, held in out.held.items() if not held]:
        del out.held[quota]
    return out


def _release(out: Rebuilt, owner: dict[str, QuotaId], decl: str, amount: Decimal | None) -> None:
    """The same arithmetic as the release scripts in ``quota.py``: never below zero, a field at
    zero is removed, a declaration that holds nothing gives nothing back."""
    quota = owner.get(decl)
    held = out.held.get(quota, {}) if quota else {}
    if decl not in held:
        return
    share = held[decl] if amount is None else min(amount, held[decl])
    held[decl] -= share
    if held[decl] == ZERO:
        del held[decl]


def compare(rebuilt: Rebuilt, found: dict[QuotaId, dict[str, Decimal]]) -> list[Difference]:
    """Where Redis (``found``: each hash's fields, ``total`` included) differs from the rebuild."""
    diffs: list[Difference] = []
    for quota in sorted(set(rebuilt.held) | set(found)):
        buyer, year = quota
        want, have = rebuilt.held.get(quota, {}), dict(found.get(quota, {}))
        have_total = have.pop(TOTAL, None)
        if not want and not have:
            continue  # a hash whose declarations all went back: a total of zero is all it holds
        if not have and have_total is None:
            diffs.append(Difference(buyer, year, "hash", "missing", f"{len(want)} declarations"))
            continue
        for decl in sorted(set(want) | set(have)):
            if want.get(decl) != have.get(decl):
                diffs.append(Difference(buyer, year, decl, _text(have.get(decl)), _text(want.get(decl))))
        want_total = sum(want.values(), ZERO)
        if have_total != want_total:
            diffs.append(Difference(buyer, year, TOTAL, _text(have_total), str(want_total)))
    return diffs


def _text(amount: Decimal | None) -> str:
    return "absent" if amount is None else str(amount)


# --- adapters -------------------------------------------------------------------------------

def _glob(text: str) -> str:
    """``text`` with Redis glob specials escaped, for SCAN patterns."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisQuotaHashes:
    """The quota hashes of one namespace, read and (with the workers stopped) rewritten."""

    def __init__(self, redis, namespace: str) -> None:
        self._redis = redis
        self._ns = namespace
        self._prefix = quota_key(namespace, "", 0).removesuffix(":0")  # "<ns>quota:", followed by buyer:year

    async def read_all(self) -> dict[QuotaId, dict[str, Decimal]]:
        keys = [k.decode() async for k in self._redis.scan_iter(match=_glob(self._prefix) + "*", count=1000)]
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        found = {}
        for key, fields in zip(keys, await pipe.execute()):
            buyer, _, year = key[len(self._prefix):].rpartition(":")
            found[(buyer, int(year))] = {k.decode(): from_units(int(v)) for k, v in fields.items()}
        return found

    async def restore(self, rebuilt: Rebuilt, quotas: Iterable[QuotaId]) -> None:
        """Write the rebuilt hashes of ``quotas`` and every declaration's applied return parts."""
        pipe = self._redis.pipeline(transaction=True)
        for buyer, year in quotas:
            key = quota_key(self._ns, buyer, year)
            held = rebuilt.held.get((buyer, year), {})
            pipe.delete(key)
            if held:
                fields = {decl: to_units(amount) for decl, amount in held.items()}
                pipe.hset(key, mapping={**fields, TOTAL: sum(fields.values())})
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
