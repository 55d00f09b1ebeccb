"""Personal data protection: keyed hashes instead of ID numbers, masks for logs.

DOMAIN §7: buyer names, ID numbers, phones and addresses never appear in logs or metric
labels in clear text, and keys derived from an ID number use a keyed hash (HMAC), so a
leaked key space cannot be reversed by hashing every possible ID number.
"""
from __future__ import annotations

import hashlib
import hmac

from services.common import config

PERSONAL_FIELDS = frozenset({
    "buyerName", "buyerIdNumber", "buyerTelephone", "payerName", "payerIdNumber", "telephone",
    "consignee", "consigneeTelephone", "consigneeAddress", "buyerRegNo",
})

_key_cache: tuple[str, bytes] | None = None


def _key() -> bytes:
    global _key_cache
    raw = config.get("SANDAN_PII_KEY")
    if _key_cache is None or _key_cache[0] != raw:
        _key_cache = (raw, raw.encode())
    return _key_cache[1]


def buyer_id_number(id_number: str | None) -> str:
    """An ID number as the annual quota counts it (DOMAIN §3): trimmed, letters upper-cased,
    so ``…123x`` and ``…123X`` are one buyer."""
    return (id_number or "").strip().upper()


def buyer_key(id_number: str | None) -> str:
    """Stable pseudonym of a buyer: HMAC-SHA256 of the normalised ID number, 32 hex chars.

    The ID type is not part of it: the same number declared under another type is the same
    person and shares one year-to-date total."""
    return hmac.new(_key(), f"id:{buyer_id_number(id_number)}".encode(), hashlib.sha256).hexdigest()[:32]


def mask(value: str | None) -> str:
    """``"110101199001011234"`` → ``"11**************34"``: enough to tell records apart in a log."""
    if not value:
        return ""
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def redact(doc: dict) -> dict:
    """A copy of a document with every personal field masked (for logs and dead letters' reasons)."""
    return {k: (mask(v) if k in PERSONAL_FIELDS and isinstance(v, str) else v) for k, v in doc.items()}
