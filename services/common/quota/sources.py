"""The adapters of a quota rebuild: the quota hashes in Redis, and the public topics it reads."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.common.money import ZERO, to_units
from services.common.quota.rebuild import TOTAL, QuotaHash, QuotaId, Rebuilt, hash_of
from services.common.quota.store import PART_MEMORY_S, parts_key, quota_key, released_field


def _glob(text: str) -> str:
    """``text`` with Redis glob specials escaped, for SCAN patterns."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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
    releases: list[dict]
    records: int
    truncated: list[str]  # topics whose oldest records retention has already deleted


def read_sources(timeout_s: float) -> Sources:
    """Every verdict, refusal and quota release on Kafka (blocking; for the command line)."""
    from services.common import kafka_io, topics
    from services.common.avro import codec

    wire = codec()
    names = [topics.name(t) for t in ("declarations.verdicts", "declarations.refused", "quota.releases")]
    raw = {name: kafka_io.read_all(name, timeout_s=timeout_s) for name in names}
    decoded = [[wire.decode(r.value)[1] for r in raw[name] if r.value is not None] for name in names]
    return Sources(*decoded, sum(map(len, raw.values())), [name for name in names if _truncated(name)])


def _truncated(topic: str) -> bool:
    from kafka import TopicPartition

    from services.common import kafka_io

    consumer = kafka_io.consumer(group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        return any(offset > 0 for offset in consumer.beginning_offsets(parts).values())
    finally:
        consumer.close()
