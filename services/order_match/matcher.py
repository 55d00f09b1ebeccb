"""The match state of one orderNo: buffering, de-duplication, changes, readiness, expiry.

Pure: no Kafka or Redis. The stream worker keeps one *bucket* per ``orderNo`` (the key every
document topic is partitioned by) in its changelog-backed table (``bucket_store``);
``sandan check`` keeps the same buckets in a dict. A bucket holds every declaration ``(ebpCode, orderNo)`` of that
order number and the waybills that no inventory has named yet (a waybill carries no
``ebpCode``; it joins the declaration whose inventory names its logisticsCode/logisticsNo).

``apply`` takes one document and says what happened: a refusal (DUPLICATE, LOCKED, SUPERSEDED,
NOT_SUBMITTER ...), or that a declaration now has all four documents and must be decided.
Documents apply in ``appTime`` then ``appType`` order whatever order they arrive in: each
declaration keeps per kind and per submitter the mark of the last document of that submitter
applied (``marks``), and a document that comes before its own submitter's mark is SUPERSEDED.
A change or withdrawal is taken only from the submitter of the document it changes; one that
finds nothing of its submitter to change touches no other submitter's document: a withdrawal
leaves only its submitter's mark, a change is held as an *orphan* (``orphanChanges``) that
completes nothing until its submitter's original comes, and yields its slot to an original
from anyone else (answered NOT_SUBMITTER). The caller decides it
(rules, quota, waybill registry) and reports the outcome with ``record_verdict``, naming the
input record that caused the decision (``decided_by``: topic, partition, offset).

Why ``decided_by``: state is written before the outputs are acknowledged, so a worker killed
in between comes back with the decision in its state but the verdict lost. The input record
is then delivered again (its offset was not committed) and would be a no-op duplicate. A
record whose position equals a declaration's ``decidedBy`` is that replay, and the caller
emits the decision again. To be able to, bodies are kept for ``replay_window`` after a
verification; then only guids and fingerprints stay, which is all LOCKED and DUPLICATE need.

A bucket keeps each document as the wire record it came in (``sandan.MatchBucket``): the
table stores and reloads buckets, and bytes cost nothing to re-encode where decoding every
held document would cost most of the worker's time. The wire record is canonical for a
document's content (amounts are scale-5 integers, fields in schema order), so its hash is
the fingerprint, and the documents are decoded only when their declaration is decided.
What the matching itself needs of a held document is kept beside it: guid, fingerprint and
the waybill key (``waybillKey`` of a declaration, ``key`` of an unclaimed waybill).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.common.avro import SCHEMA_OF_KIND, codec
from services.common.clock import china_stamp, parse_app_time
from services.common.documents import DECLARATION_KINDS, kind_of
from services.common.senders import same_sender, submitter_of
from services.common import codes

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
class Evicted:
    """An orphan change (decoded) whose slot an original of another submitter takes."""
    document: dict


@dataclass(frozen=True)
class Withdrawn:
    """An appType 3 document removed its predecessor."""
    document: dict


def wire_record(doc: dict) -> bytes:
    """A document as the wire record it travels in (``services.common.avro``)."""
    return codec().encode(SCHEMA_OF_KIND[kind_of(doc)], doc)


def document(raw: bytes | None) -> dict | None:
    """A held wire record decoded (None stays None)."""
    return None if raw is None else codec().decode(raw)[1]


def fingerprint(doc: dict | bytes) -> str:
    """Content identity of a document (or of its wire record): equal for the same content,
    whatever the decimal scale, since amounts travel as scale-5 integers."""
    raw = doc if isinstance(doc, bytes) else wire_record(doc)
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def order_key(doc: dict) -> str:
    """A document's place in the order of application (DOMAIN §2a): its appTime, then its
    appType (1 new, 2 change, 3 withdrawal). appTime is 14 digits, so text order is time order."""
    return f"{(doc.get('appTime') or '').strip()} {(doc.get('appType') or '').strip()}"


def forward_dated(doc: dict, arrived_ms: int, skew_ms: int) -> Refusal | None:
    """APP_TIME (DOMAIN §2a): an appTime later than the document's arrival by more than the
    allowed clock skew, or no real instant at all, is refused; the sender's clock may not
    choose the quota year."""
    text = (doc.get("appTime") or "").strip()
    try:
        at = parse_app_time(text) if len(text) == 14 and text.isascii() and text.isdigit() else None
    except ValueError:
        at = None
    if at is None:
        return Refusal(doc, codes.APP_TIME, f"appTime {text[:20]!r} is not a China-time instant YYYYMMDDhhmmss")
    if int(at.timestamp()) * 1000 > arrived_ms + skew_ms:
        return Refusal(doc, codes.APP_TIME, f"appTime {text} is more than {skew_ms // 1000} s later than the document's"
                                            f" arrival ({china_stamp(arrived_ms)[:14]})")
    return None


def new_bucket(order_no: str) -> dict:
    return {"orderNo": order_no, "declarations": [], "waybills": []}


def _new_declaration(ebp_code: str, now_ms: int, timeout_ms: int) -> dict:
    return {"ebpCode": ebp_code, "status": OPEN, "order": None, "payment": None, "logistics": None,
            "inventory": None, "guids": {}, "fingerprints": {}, "firstAt": now_ms, "lastAt": now_ms,
            "deadline": now_ms + timeout_ms, "decidedAt": None, "decidedBy": None, "waybillKey": None,
            "marks": {}, "orphanChanges": [], "inventoryAt": None}


LEGACY_MARK = ""  # the submitter of a mark written before submitters: it holds for everyone


def mark_of(marks: dict, kind: str, submitter: str) -> str | None:
    """The mark ``submitter``'s next document of ``kind`` must not come before (None: no mark)."""
    owned = marks.get(kind)
    if owned is None or isinstance(owned, str):
        return owned
    found = [m for m in (owned.get(submitter), owned.get(LEGACY_MARK)) if m]
    return max(found) if found else None


def _set_mark(marks: dict, kind: str, submitter: str, key: str) -> None:
    owned = marks.get(kind)
    if not isinstance(owned, dict):
        owned = marks[kind] = {} if owned is None else {LEGACY_MARK: owned}
    owned[submitter] = key


def find_declaration(bucket: dict, ebp_code: str) -> dict | None:
    for decl in bucket["declarations"]:
        if decl["ebpCode"] == ebp_code:
            return decl
    return None


def _waybill_key(doc: dict) -> list[str]:
    return [(doc.get("logisticsCode") or "").strip(), (doc.get("logisticsNo") or "").strip()]


def _declaration_naming(bucket: dict, key: list[str]) -> dict | None:
    """The declaration whose inventory names this waybill: it holds the inventory, or it was
    verified and its documents were dropped (the key stays)."""
    for decl in bucket["declarations"]:
        if decl["waybillKey"] == key:
            return decl
    return None


def _unattached(bucket: dict, key: list[str]) -> dict | None:
    for entry in bucket["waybills"]:
        if entry["key"] == key:
            return entry
    return None


def apply(bucket: dict, doc: dict, now_ms: int, timeout_ms: int, raw: bytes | None = None,
          appended_ms: int | None = None) -> list:
    """Take one order, payment, waybill or inventory into its bucket; mutates ``bucket``.

    ``raw`` is the document's wire record when the caller has it (else it is encoded here).
    ``appended_ms`` is the broker's append time of its record (None offline); an inventory's
    is kept as its declaration's ``inventoryAt``, whose year is the quota year.
    """
    kind = kind_of(doc)
    if raw is None:
        raw = wire_record(doc)
    if kind == "logistics":
        key = _waybill_key(doc)
        decl = _declaration_naming(bucket, key)
        if decl is None:
            return _apply_unattached_waybill(bucket, doc, raw, key, now_ms)
    else:
        ebp = (doc.get("ebpCode") or "").strip()
        decl = find_declaration(bucket, ebp)
        if decl is None:
            # a withdrawal that finds nothing still opens the declaration, to hold its mark
            decl = _new_declaration(ebp, now_ms, timeout_ms)
            bucket["declarations"].append(decl)
    return _apply_to_declaration(bucket, decl, kind, doc, raw, now_ms, appended_ms)


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def _slot_refusal(kind: str, held_guid: str | None, held_fp: str | None, doc: dict, fp: str, status: str,
                  mark: str | None = None, held: bytes | None = None,
                  orphan: bool = False) -> Refusal | Evicted | None | bool:
    """Common rules of one document slot. Returns a Refusal, True for a no-op, Evicted when
    ``doc`` takes the slot of an orphan change, or None to go on.

    ``mark`` is the order key of the last document of ``doc``'s submitter applied to the slot
    (a withdrawal too). Documents apply in order-key order; one that arrives after a later
    one was applied has been overtaken: applying it now would undo the later one, so it is
    SUPERSEDED. Of two originals (appType 1 both) the first to arrive holds the slot and the
    other is DUPLICATE. ``held`` is the wire record in the slot: only its submitter may change
    or withdraw it. An ``orphan`` held change has no original of its submitter behind it, so
    an original from another submitter is not a duplicate of anything: it takes the slot.
    """
    guid = doc.get("guid")
    if held_guid == guid and held_fp == fp:
        return True  # the same document delivered again
    app_type = doc.get("appType")
    if app_type in ("2", "3") and held is not None and not same_sender(document(held), doc):
        return Refusal(doc, codes.NOT_SUBMITTER, f"appType {app_type}: the {kind} it would "
                                                 f"{'change' if app_type == '2' else 'withdraw'} was submitted by "
                                                 f"another enterprise; only its submitter may")
    if status == VERIFIED:
        if app_type in ("2", "3"):
            return Refusal(doc, codes.LOCKED, f"{kind} changed (appType {app_type}) after its declaration was verified")
        return Refusal(doc, codes.DUPLICATE,
                       f"{_article(kind)} {kind} with guid {held_guid} was already declared and verified")
    if status == INCOMPLETE:
        return Refusal(doc, codes.INCOMPLETE, "the declaration expired incomplete; declare it anew under a new orderNo")
    if mark is not None and order_key(doc) < mark and not (app_type == "1" and mark.endswith(" 1")):
        return Refusal(doc, codes.SUPERSEDED, f"{_article(kind)} {kind} with appTime/appType {mark} was applied before"
                                              f" this one arrived and comes after it in the order of application")
    if app_type == "1" and orphan and held is not None:
        held_doc = document(held)
        if not same_sender(held_doc, doc):
            return Evicted(held_doc)
    if app_type == "1" and held_guid is not None:
        return Refusal(doc, codes.DUPLICATE,
                       f"{_article(kind)} {kind} with guid {held_guid} is already declared (appType 1 repeated)")
    return None


def _apply_to_declaration(bucket: dict, decl: dict, kind: str, doc: dict, raw: bytes, now_ms: int,
                          appended_ms: int | None = None) -> list:
    fp = fingerprint(raw)
    marks = decl.setdefault("marks", {})
    orphans = decl.setdefault("orphanChanges", [])
    submitter = submitter_of(doc)
    app_type = doc.get("appType")
    verdict = _slot_refusal(kind, decl["guids"].get(kind), decl["fingerprints"].get(kind), doc, fp, decl["status"],
                            mark_of(marks, kind, submitter), decl[kind], kind in orphans)
    if verdict is True:
        return []
    if isinstance(verdict, Refusal):
        if (app_type == "1" and kind in orphans and verdict.code in (codes.SUPERSEDED, codes.DUPLICATE)
                and same_sender(document(decl[kind]), doc)):
            # the orphan's own original came (SUPERSEDED or DUPLICATE): the change stands on it
            orphans.remove(kind)
            return [verdict] + ([Ready(decl["ebpCode"])] if complete(decl) else [])
        return [verdict]
    events: list = []
    if isinstance(verdict, Evicted):
        events.append(_evicted(kind, verdict.document))
        decl[kind] = None
        decl["guids"].pop(kind, None)
        decl["fingerprints"].pop(kind, None)
        orphans.remove(kind)
    _set_mark(marks, kind, submitter, order_key(doc))
    if app_type == "3":
        if decl["guids"].get(kind) is None:
            # the mark stays: the document it names, should it arrive later, is SUPERSEDED
            return [Refusal(doc, codes.NOT_FOUND, f"appType 3: no {kind} of declaration {decl['ebpCode']}:"
                                                  f"{bucket['orderNo']} to withdraw (yet)")]
        decl[kind] = None
        decl["guids"].pop(kind, None)
        decl["fingerprints"].pop(kind, None)
        if kind in orphans:
            orphans.remove(kind)
        events.append(Withdrawn(doc))
    else:
        if app_type == "2" and decl[kind] is None:
            orphans.append(kind)  # nothing of its submitter to change: held, but completes nothing yet
        decl[kind] = raw
        decl["guids"][kind] = doc.get("guid")
        decl["fingerprints"][kind] = fp
    decl["lastAt"] = now_ms
    if kind == "inventory":
        named_before = decl["waybillKey"]
        decl["waybillKey"] = _waybill_key(doc) if decl["inventory"] is not None else None
        decl["inventoryAt"] = appended_ms if decl["inventory"] is not None else None  # chooses the quota year
        _reattach_waybill(bucket, decl, named_before, now_ms)
    if decl["status"] == REJECTED:
        decl["status"] = OPEN  # a corrected document re-opens a rejected declaration
    if complete(decl):
        events.append(Ready(decl["ebpCode"]))
    return events


def _evicted(kind: str, change: dict) -> Refusal:
    return Refusal(change, codes.NOT_SUBMITTER, f"appType 2: its submitter never declared the {kind} it would change,"
                                                f" and another enterprise's original {kind} takes the slot")


def _reattach_waybill(bucket: dict, decl: dict, named_before: list[str] | None, now_ms: int) -> None:
    """After the inventory changed, hold the waybill it names (and let go of one it no longer names).

    A held waybill is the one the inventory named (``named_before``), or one taken at the
    deadline that names another number (``merge_at_deadline``): it goes back under its own.
    """
    wanted = decl["waybillKey"]
    orphans = decl.setdefault("orphanChanges", [])
    if decl["logistics"] is not None and named_before != wanted:
        held = document(decl["logistics"])
        bucket["waybills"].append({"doc": decl["logistics"], "guid": decl["guids"].pop("logistics"),
                                   "key": _waybill_key(held), "fingerprint": decl["fingerprints"].pop("logistics"),
                                   "at": now_ms, "orphan": "logistics" in orphans})
        decl["logistics"] = None
        if "logistics" in orphans:
            orphans.remove("logistics")
    if wanted is not None and decl["logistics"] is None:
        entry = _unattached(bucket, wanted)
        if entry is not None:
            _hold_waybill(bucket, decl, entry)


def merge_at_deadline(bucket: dict, now_ms: int, all_open: bool = False) -> bool:
    """At a deadline, documents of the order number that could not join the declaration holding
    its order join it, when together they make exactly one set of four: declarations of other
    ebpCodes that have no order (a payment or inventory naming another platform) and the one
    waybill no inventory named (another number). Decided with them, the rules name the
    mismatch (PAYMENT_REFERENCE, INVENTORY_PARTIES) where INCOMPLETE would hide that every
    document came (DOMAIN §2). Anything less clear (two open orders, two candidates of a kind, a
    change without its original) is left to close INCOMPLETE. True when the declaration holding the
    order is complete now (its deadline the earliest of the group's: the caller decides it)."""
    open_ = [d for d in bucket["declarations"] if d["status"] == OPEN and not complete(d)]
    if not any(all_open or d["deadline"] <= now_ms for d in open_):
        return False
    holders = [d for d in open_ if d["order"] is not None]
    if len(holders) != 1 or any(d.get("orphanChanges") for d in open_):
        return False
    [anchor] = holders
    source: dict[str, dict] = {k: anchor for k in DECLARATION_KINDS if anchor[k] is not None}
    # a declaration with a kind the order's has stays apart (it is another declaration's)
    partners = [d for d in open_ if d is not anchor and any(d[k] is not None for k in DECLARATION_KINDS)
                and not any(d[k] is not None for k in source)]
    for partner in partners:
        for kind in DECLARATION_KINDS:
            if partner[kind] is not None:
                if kind in source:
                    return False
                source[kind] = partner
    waybill = None
    if "logistics" not in source:
        if len(bucket["waybills"]) != 1 or bucket["waybills"][0].get("orphan"):
            return False
        waybill = bucket["waybills"][0]
    if len(source) + (waybill is not None) != len(DECLARATION_KINDS):
        return False
    for partner in partners:
        for kind in DECLARATION_KINDS:
            if partner[kind] is not None:
                anchor[kind] = partner[kind]
                anchor["guids"][kind] = partner["guids"][kind]
                anchor["fingerprints"][kind] = partner["fingerprints"][kind]
                if (partner.get("marks") or {}).get(kind) is not None:
                    anchor.setdefault("marks", {})[kind] = partner["marks"][kind]
                if kind == "inventory":
                    anchor["waybillKey"], anchor["inventoryAt"] = partner["waybillKey"], partner.get("inventoryAt")
        anchor["firstAt"] = min(anchor["firstAt"], partner["firstAt"])
        anchor["lastAt"] = max(anchor["lastAt"], partner["lastAt"])
        anchor["deadline"] = min(anchor["deadline"], partner["deadline"])
        bucket["declarations"].remove(partner)
    if waybill is not None:
        _hold_waybill(bucket, anchor, waybill)
    return True


def late_complete(bucket: dict, now_ms: int | None) -> list[str]:
    """ebpCodes of open declarations past their deadline (None: whatever it is) that have their
    four documents."""
    return [d["ebpCode"] for d in bucket["declarations"]
            if d["status"] == OPEN and (now_ms is None or d["deadline"] <= now_ms) and complete(d)]


def hold_unnamed_waybill(bucket: dict, decl: dict) -> None:
    """A declaration closing without its inventory takes its order number's one unattached
    waybill, which ``missing_kinds`` counts as arrived: the carrier gets the verdict's receipt
    with the other documents, and a replay of the decision emits it again."""
    if decl["inventory"] is not None or decl["logistics"] is not None or len(bucket["waybills"]) != 1:
        return
    _hold_waybill(bucket, decl, bucket["waybills"][0])


def _hold_waybill(bucket: dict, decl: dict, entry: dict) -> None:
    """An unattached waybill becomes the declaration's."""
    bucket["waybills"].remove(entry)
    decl["logistics"] = entry["doc"]
    decl["guids"]["logistics"] = entry["guid"]
    decl["fingerprints"]["logistics"] = entry["fingerprint"]
    if entry.get("orphan"):
        decl.setdefault("orphanChanges", []).append("logistics")


def _apply_unattached_waybill(bucket: dict, doc: dict, raw: bytes, key: list[str], now_ms: int) -> list:
    fp = fingerprint(raw)
    entry = _unattached(bucket, key)
    held_guid = entry["guid"] if entry else None
    orphan = bool(entry and entry.get("orphan"))
    verdict = _slot_refusal("waybill", held_guid, entry["fingerprint"] if entry else None, doc, fp, OPEN,
                            held=entry["doc"] if entry else None, orphan=orphan)
    if verdict is True:
        return []
    if isinstance(verdict, Refusal):
        if orphan and doc.get("appType") == "1" and same_sender(document(entry["doc"]), doc):
            entry["orphan"] = False  # its submitter's original came: the change stands
        return [verdict]
    events: list = []
    if isinstance(verdict, Evicted):
        events.append(_evicted("waybill", verdict.document))
        bucket["waybills"].remove(entry)
        entry = None
    if doc.get("appType") == "3":
        if entry is None:
            return [Refusal(doc, codes.NOT_FOUND, "appType 3: no waybill to withdraw")]
        bucket["waybills"].remove(entry)
        return [Withdrawn(doc)]
    if entry is not None:
        entry["doc"], entry["guid"], entry["fingerprint"] = raw, doc.get("guid"), fp
    else:
        bucket["waybills"].append({"doc": raw, "guid": doc.get("guid"), "key": key, "fingerprint": fp, "at": now_ms,
                                   "orphan": doc.get("appType") == "2"})
    return events


def complete(decl: dict) -> bool:
    """All four documents held, none of them an orphan change."""
    return all(decl[k] is not None for k in DECLARATION_KINDS) and not decl.get("orphanChanges")


def documents(decl: dict) -> tuple[dict | None, dict | None, dict | None, dict | None]:
    """The declaration's order, payment, waybill and inventory, decoded (None where missing)."""
    return document(decl["order"]), document(decl["payment"]), document(decl["logistics"]), document(decl["inventory"])


def missing_kinds(bucket: dict, decl: dict) -> list[str]:
    orphans = decl.get("orphanChanges") or ()
    missing = [k for k in DECLARATION_KINDS if decl[k] is None or k in orphans]
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
    return [d for d in bucket["declarations"] if d["status"] == OPEN and d["deadline"] <= now_ms and not complete(d)]


def expired_waybills(bucket: dict, now_ms: int, timeout_ms: int) -> list[dict]:
    """Waybills no declaration claimed within the timeout (removed from the bucket). While a
    declaration of the order number is open its inventory may still name one; once none is, a
    waybill none of them named is answered on its own, or its carrier would never hear of it."""
    if any(d["status"] == OPEN for d in bucket["declarations"]):
        return []
    gone = [e for e in bucket["waybills"] if e["at"] + timeout_ms <= now_ms]
    for entry in gone:
        bucket["waybills"].remove(entry)
    return [document(e["doc"]) for e in gone]


def next_deadline(bucket: dict, timeout_ms: int, replay_window_ms: int = 0) -> int | None:
    """When the bucket next needs attention: an expiry, or verified bodies to drop."""
    deadlines = [d["deadline"] for d in bucket["declarations"] if d["status"] == OPEN]
    deadlines += [(d.get("decidedAt") or 0) + replay_window_ms for d in bucket["declarations"]
                  if d["status"] == VERIFIED and d["inventory"] is not None]
    if not any(d["status"] == OPEN for d in bucket["declarations"]):  # see expired_waybills
        deadlines += [e["at"] + timeout_ms for e in bucket["waybills"]]
    return min(deadlines) if deadlines else None
