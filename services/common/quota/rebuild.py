"""Rebuilding the buyers' annual quotas (DOMAIN §3) from Kafka, the source of truth.

A quota hash in Redis (``store.py``) holds one field per declaration that still counts (its
taxable value P, or what partial returns left of it), their ``total``, and a ``released:``
mark for each declaration whose reservation has all gone back. Public topics say the same:

- ``declarations.verdicts``: every verified declaration reserved its P (``buyerKey``,
  ``quotaYear``, ``taxableValue``);
- ``declarations.refused``: the guarantee service refused it and released all of it;
- ``quota.releases``: a cancellation released all of it (``part`` null), each completed return
  request a part (``part`` = ``return:<CEB625 guid>``, applied once).

So ``rebuild`` = verified − refused − released, per buyer and year, and ``compare`` says where
Redis differs. Pure; the adapters ``sandan quota rebuild`` uses (Redis, Kafka) are in ``sources``.

Limit: a rebuild is only as complete as the topics. Records past a topic's retention are
gone, and with them the declarations they reserved; ``Sources.truncated`` names such
topics, and a repair is then refused rather than dropping quota that still counts.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from services.common.money import ZERO, from_units
from services.common.quota.store import RELEASED, released_field

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


def rebuild(verified: Iterable[dict], refused: Iterable[dict], releases: Iterable[dict]) -> Rebuilt:
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
    for release in releases:
        decl_id, part = release["declarationId"], release.get("part")
        if part is None:
            _release(out, owner, decl_id, None)
        elif part not in out.parts.setdefault(decl_id, set()):  # a redelivered part counts once
            out.parts[decl_id].add(part)
            _release(out, owner, decl_id, release.get("amount") or ZERO)
    for quota in out.quotas.values():
        quota.total = sum(quota.held.values(), ZERO)
    return out


def beyond_limit(rebuilt: Rebuilt, limit: Decimal) -> list[str]:
    """Buyer-years whose verified declarations hold more than the annual limit. The topics cannot
    contradict each other here (every record is keyed by its declaration or part, so nothing
    forks): a total past the limit is a reservation Redis lost in a failover, after which a later
    declaration was reserved on top of what was left. Customs was told both verified, so the
    rebuild keeps both; this says where."""
    return [f"buyer {buyer} {year}: verified declarations hold {quota.total}, beyond the annual limit {limit}"
            " (a reservation lost in a Redis failover let a later one pass)"
            for (buyer, year), quota in sorted(rebuilt.quotas.items()) if quota.total is not None and quota.total > limit]


def _release(out: Rebuilt, owner: dict[str, QuotaId], decl: str, amount: Decimal | None) -> None:
    """The arithmetic of the release scripts in ``store.py``: never below zero, a declaration
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
