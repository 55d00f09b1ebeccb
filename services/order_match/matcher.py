"""The match state of one orderNo: buffering, de-duplication, changes, readiness, expiry.

Pure: no faust, Kafka or Redis. The stream processor keeps one *bucket* per ``orderNo``
(the key every document topic is partitioned by) in a faust table; ``sandan check`` keeps
the same buckets in a dict. A bucket holds every declaration ``(ebpCode, orderNo)`` of that
order number and the waybills that no inventory has named yet (a waybill carries no
``ebpCode``; it joins the declaration whose inventory names its logisticsCode/logisticsNo).

``apply`` takes one document and says what happened: a refusal (DUPLICATE, LOCKED ...), or
that a declaration now has all four documents and must be decided. The caller decides it
(rules, quota, waybill registry) and reports the outcome with ``record_verdict``, naming the
input record that caused the decision (``decided_by``: topic, partition, offset).

Why ``decided_by``: state is written before the outputs are acknowledged, so a worker killed
in between comes back with the decision in its state but the verdict lost. The input record
is then delivered again (its offset was not committed) and would be a no-op duplicate. A
record whose position equals a declaration's ``decidedBy`` is that replay, and the caller
emits the decision again. To be able to, bodies are kept for ``replay_window`` after a
verification; then only guids and fingerprints stay, which is all LOCKED and DUPLICATE need.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

from services.common.documents import DECLARATION_KINDS, kind_of
from services.order_match import codes

OPEN, VERIFIED, REJECTED, INCOMPLETE = "open", "verified", "rejected", "incomplete"
CLOSED = (VERIFIED, INCOMPLETE)


@dataclass(frozen=True)
class Refusal:
    """A document refused on arrival; the declaration it aimed at is not changed."""
    document: dict
    code: str
    message: str


@dataclass(frozen=True)
class Ready:
    """A declaration has its four documents (again) and needs a verdict."""
    ebp_code: str


@dataclass(frozen=True)
class Withdrawn:
    """An appType 3 document removed its predecessor."""
    document: dict


def _canonical(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    raise TypeError(type(value).__name__)


def fingerprint(doc: dict) -> str:
    """Content identity of a document: equal for the same content, whatever the decimal scale."""
    body = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=_canonical, separators=(",", ":"))
    return hashlib.blake2b(body.encode(), digest_size=12).hexdigest()


def new_bucket(order_no: str) -> dict:
    return {"orderNo": order_no, "declarations": [], "waybills": []}


def _new_declaration(ebp_code: str, now_ms: int, timeout_ms: int) -> dict:
    return {"ebpCode": ebp_code, "status": OPEN, "order": None, "payment": None, "logistics": None,
            "inventory": None, "guids": {}, "fingerprints": {}, "firstAt": now_ms, "lastAt": now_ms,
            "deadline": now_ms + timeout_ms}


def find_declaration(bucket: dict, ebp_code: str) -> dict | None:
    for decl in bucket["declarations"]:
        if decl["ebpCode"] == ebp_code:
            return decl
    return None


def _waybill_key(doc: dict) -> tuple[str, str]:
    return (doc.get("logisticsCode") or "").strip(), (doc.get("logisticsNo") or "").strip()


def _declaration_naming(bucket: dict, key: tuple[str, str]) -> dict | None:
    for decl in bucket["declarations"]:
        inv = decl["inventory"]
        if inv is not None and _waybill_key(inv) == key:
            return decl
        if inv is None and decl["guids"].get("logistics") and decl.get("waybillKey") == list(key):
            return decl  # verified: the body is gone, the key it named is kept
    return None


def _unattached(bucket: dict, key: tuple[str, str]) -> dict | None:
    for entry in bucket["waybills"]:
        if _waybill_key(entry["doc"]) == key:
            return entry
    return None


def apply(bucket: dict, doc: dict, now_ms: int, timeout_ms: int) -> list:
    """Take one order, payment, waybill or inventory into its bucket; mutates ``bucket``."""
    kind = kind_of(doc)
    if kind == "logistics":
        key = _waybill_key(doc)
        decl = _declaration_naming(bucket, key)
        if decl is None:
            return _apply_unattached_waybill(bucket, doc, key, now_ms)
    else:
        ebp = (doc.get("ebpCode") or "").strip()
        decl = find_declaration(bucket, ebp)
        if decl is None:
            if doc.get("appType") == "3":
                return [Refusal(doc, codes.NOT_FOUND, f"appType 3: no {kind} of declaration {ebp}:{bucket['orderNo']} to withdraw")]
            decl = _new_declaration(ebp, now_ms, timeout_ms)
            bucket["declarations"].append(decl)
    return _apply_to_declaration(bucket, decl, kind, doc, now_ms)


def _slot_refusal(kind: str, held_guid: str | None, held_fp: str | None, doc: dict, fp: str, status: str) -> Refusal | None | bool:
    """Common rules of one document slot. Returns a Refusal, True for a no-op, or None to go on."""
    guid = doc.get("guid")
    if held_guid == guid and held_fp == fp:
        return True  # the same document delivered again
    app_type = doc.get("appType")
    if status == VERIFIED:
        if app_type in ("2", "3"):
            return Refusal(doc, codes.LOCKED, f"{kind} changed (appType {app_type}) after its declaration was verified")
        return Refusal(doc, codes.DUPLICATE, f"a {kind} with guid {held_guid} was already declared and verified")
    if status == INCOMPLETE:
        return Refusal(doc, codes.INCOMPLETE, "the declaration expired incomplete; declare it anew under a new orderNo")
    if app_type == "1" and held_guid is not None:
        return Refusal(doc, codes.DUPLICATE, f"a {kind} with guid {held_guid} is already declared (appType 1 repeated)")
    return None


def _apply_to_declaration(bucket: dict, decl: dict, kind: str, doc: dict, now_ms: int) -> list:
    fp = fingerprint(doc)
    verdict = _slot_refusal(kind, decl["guids"].get(kind), decl["fingerprints"].get(kind), doc, fp, decl["status"])
    if verdict is True:
        return []
    if verdict is not None:
        return [verdict]
    events: list = []
    if doc.get("appType") == "3":
        if decl["guids"].get(kind) is None:
            return [Refusal(doc, codes.NOT_FOUND, f"appType 3: no {kind} to withdraw")]
        decl[kind] = None
        decl["guids"].pop(kind, None)
        decl["fingerprints"].pop(kind, None)
        events.append(Withdrawn(doc))
    else:
        decl[kind] = doc
        decl["guids"][kind] = doc.get("guid")
        decl["fingerprints"][kind] = fp
    decl["lastAt"] = now_ms
    if kind == "inventory":
        _reattach_waybill(bucket, decl, now_ms)
    if decl["status"] == REJECTED:
        decl["status"] = OPEN  # a corrected document re-opens a rejected declaration
    if all(decl[k] is not None for k in DECLARATION_KINDS):
        events.append(Ready(decl["ebpCode"]))
    return events


def _reattach_waybill(bucket: dict, decl: dict, now_ms: int) -> None:
    """After the inventory changed, hold the waybill it names (and let go of one it no longer names)."""
    held = decl["logistics"]
    inv = decl["inventory"]
    wanted = _waybill_key(inv) if inv is not None else None
    if held is not None and _waybill_key(held) != wanted:
        bucket["waybills"].append({"doc": held, "fingerprint": decl["fingerprints"].pop("logistics"), "at": now_ms})
        decl["logistics"] = None
        decl["guids"].pop("logistics", None)
    if wanted is not None and decl["logistics"] is None:
        entry = _unattached(bucket, wanted)
        if entry is not None:
            bucket["waybills"].remove(entry)
            decl["logistics"] = entry["doc"]
            decl["guids"]["logistics"] = entry["doc"].get("guid")
            decl["fingerprints"]["logistics"] = entry["fingerprint"]


def _apply_unattached_waybill(bucket: dict, doc: dict, key: tuple[str, str], now_ms: int) -> list:
    fp = fingerprint(doc)
    entry = _unattached(bucket, key)
    held_guid = entry["doc"].get("guid") if entry else None
    verdict = _slot_refusal("waybill", held_guid, entry["fingerprint"] if entry else None, doc, fp, OPEN)
    if verdict is True:
        return []
    if verdict is not None:
        return [verdict]
    if doc.get("appType") == "3":
        if entry is None:
            return [Refusal(doc, codes.NOT_FOUND, "appType 3: no waybill to withdraw")]
        bucket["waybills"].remove(entry)
        return [Withdrawn(doc)]
    if entry is not None:
        entry["doc"], entry["fingerprint"] = doc, fp
    else:
        bucket["waybills"].append({"doc": doc, "fingerprint": fp, "at": now_ms})
    return []


def documents(decl: dict) -> tuple[dict | None, dict | None, dict | None, dict | None]:
    return decl["order"], decl["payment"], decl["logistics"], decl["inventory"]


def missing_kinds(bucket: dict, decl: dict) -> list[str]:
    missing = [k for k in DECLARATION_KINDS if decl[k] is None]
    if "logistics" in missing and decl["inventory"] is None and bucket["waybills"]:
        missing.remove("logistics")  # a waybill for this order is here; only the inventory can name it
    return missing


def record_verdict(bucket: dict, ebp_code: str, status: str, now_ms: int, decided_by: str | None = None) -> None:
    """Note a declaration's verdict and the input record that caused it."""
    decl = find_declaration(bucket, ebp_code)
    if decl is None:
        return
    decl["status"] = status
    decl["decidedAt"] = now_ms
    decl["decidedBy"] = decided_by
    if status == VERIFIED:
        inv = decl["inventory"]
        decl["waybillKey"] = list(_waybill_key(inv)) if inv is not None else None


def replayed(bucket: dict, position: str) -> list[dict]:
    """Declarations decided by the input record at ``position`` (a replay after a crash)."""
    return [d for d in bucket["declarations"] if d.get("decidedBy") == position]


def drop_old_bodies(bucket: dict, now_ms: int, replay_window_ms: int) -> None:
    """Forget the bodies of verified declarations once no replay can need them."""
    for decl in bucket["declarations"]:
        if decl["status"] == VERIFIED and (decl.get("decidedAt") or 0) + replay_window_ms <= now_ms:
            for kind in DECLARATION_KINDS:
                decl[kind] = None


def expired(bucket: dict, now_ms: int) -> list[dict]:
    """Open declarations past their deadline (the caller gives each an INCOMPLETE verdict)."""
    return [d for d in bucket["declarations"] if d["status"] == OPEN and d["deadline"] <= now_ms
            and not all(d[k] is not None for k in DECLARATION_KINDS)]


def expired_waybills(bucket: dict, now_ms: int, timeout_ms: int) -> list[dict]:
    """Waybills no declaration claimed within the timeout (removed from the bucket)."""
    if bucket["declarations"]:
        return []  # they will be reported with the declaration's verdict
    gone = [e for e in bucket["waybills"] if e["at"] + timeout_ms <= now_ms]
    for entry in gone:
        bucket["waybills"].remove(entry)
    return [e["doc"] for e in gone]


def next_deadline(bucket: dict, timeout_ms: int, replay_window_ms: int = 0) -> int | None:
    """When the bucket next needs attention: an expiry, or verified bodies to drop."""
    deadlines = [d["deadline"] for d in bucket["declarations"] if d["status"] == OPEN]
    deadlines += [(d.get("decidedAt") or 0) + replay_window_ms for d in bucket["declarations"]
                  if d["status"] == VERIFIED and d["inventory"] is not None]
    if not bucket["declarations"]:
        deadlines += [e["at"] + timeout_ms for e in bucket["waybills"]]
    return min(deadlines) if deadlines else None
