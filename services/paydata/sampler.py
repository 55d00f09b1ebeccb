"""Which verified declarations get a payment-data check (pure).

A keyed hash of the declaration id against the configured share: the same declaration is
picked or not on every run and after every restart, and a platform cannot tell in advance
which of its orders will be asked for without the key.
"""
from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from fractions import Fraction

_SPACE = 1 << 64


def parse_share(text: str) -> Fraction:
    """``"0.01"`` → 1/100; a share is a decimal from 0 to 1."""
    try:
        share = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not share.is_finite() or not 0 <= share <= 1:
        raise ValueError(f"{text!r} is not a share between 0 and 1")
    return Fraction(share)


def picked(declaration_id: str, share: Fraction, key: bytes) -> bool:
    digest = hmac.new(key, f"paydata-sample:{declaration_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < share * _SPACE
