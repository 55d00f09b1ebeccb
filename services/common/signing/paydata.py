"""The signed text of a 179 payment-data upload (公告2018年第179号, ``realTimeDataUpload``).

The platform signs the four first-level members of ``payExInfoStr`` joined with ``||``::

    "sessionID":"…"||"payExchangeInfoHead":"{…}"||"payExchangeInfoLists":"[…]"||"serviceTime":"…"

The nested head and lists are written as compact JSON (no white space, members in the order
given, non-ASCII characters as themselves, not ``\\uXXXX``), placed inside the quotes without
escaping their own quotes: what the public connectors produce with fastjson's
``JSON.toJSONString`` or Newtonsoft's ``SerializeObject``. A verifier therefore rebuilds the text
from the upload as received, parsed with its member order kept and numbers as ``Decimal``
(``json.loads(text, parse_float=Decimal)``): ``totalAmount`` ``100`` and ``100.00`` are
different texts, as they are to the signer.

``signValue`` is the base64 (standard alphabet, with padding, no line breaks) of the raw
signature: DER ``r, s`` for SM2-SM3 (a raw 64-byte ``r || s`` is accepted too), PKCS#1 v1.5 for
RSA. ``certNo`` is the certificate number (``Certificate.number``).
"""
from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal

from services.common.signing.crypto import (
    MALFORMED, NOT_SIGNED, Certificate, PrivateKey, SignatureError, sign, verify,
)

SIGNED_MEMBERS = ("sessionID", "payExchangeInfoHead", "payExchangeInfoLists", "serviceTime")


def compact_json(value) -> str:
    """``value`` as compact JSON in the connectors' form; floats are refused (money is exact)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(str(k))}:{compact_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if value is True or value is False or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)
    raise TypeError(f"{type(value).__name__} has no exact JSON form here (use Decimal for amounts)")


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def signed_text(payload: dict) -> str:
    """The ``||`` text the platform signs, from ``payExInfoStr`` (a dict in received order)."""
    missing = [name for name in SIGNED_MEMBERS if name not in payload]
    if missing:
        raise SignatureError(MALFORMED, f"payExInfoStr lacks {', '.join(missing)}")
    parts = []
    for name in SIGNED_MEMBERS:
        value = payload[name]
        text = value if isinstance(value, str) else compact_json(value)
        parts.append(f'"{name}":"{text}"')
    return "||".join(parts)


def sign_paydata(key: PrivateKey, payload: dict) -> str:
    """``signValue`` for ``payload``: base64 of the signature over ``signed_text`` in UTF-8."""
    return base64.b64encode(sign(key, signed_text(payload).encode("utf-8"))).decode("ascii")


def verify_paydata(cert: Certificate, payload: dict, sign_value: str | None = None) -> None:
    """Nothing when ``sign_value`` (default: ``payload["signValue"]``) verifies with ``cert``."""
    if sign_value is None:
        sign_value = payload.get("signValue")
    if not sign_value:
        raise SignatureError(NOT_SIGNED, "payExInfoStr has no signValue")
    try:
        raw = base64.b64decode(sign_value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(MALFORMED, "signValue is not base64") from None
    verify(cert, signed_text(payload).encode("utf-8"), raw, cert.algorithm)
