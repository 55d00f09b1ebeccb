"""The gateway's signature rule (SANDAN_REQUIRE_SIGNATURE): which message types must be signed,
and the check of a submitted message's ``ds:Signature`` against the certificate registry.

Pure (runs in the Submit worker thread): the registry's state is a ``CertificateBook`` that
``certificates.CertificateFollower`` keeps up to date from the certificates topic. A signature
verifies only with a certificate registered for one of the caller's enterprise codes (the
KeyName picks it; the certificate embedded in the message is never trusted), in force at the
moment of the check (not expired, not yet valid, revoked).
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from lxml import etree

from services.common.clock import now_ms
from services.common.documents import MESSAGE_TYPES
from services.common.senders import SENDER_FIELDS
from services.common.signing.crypto import NOT_SIGNED, SignatureError
from services.common.signing.registry import CertificateBook
from services.common.signing.xmldsig import (
    SIGNATURE_TAG, Verified, embedded_certificate, read_signature, verify_signature,
)

STANDARD = frozenset(code for code, mt in MESSAGE_TYPES.items() if mt.signed)  # DOMAIN §1: 621/623/625/711


def required_types(setting: str) -> frozenset[str]:
    """The message types SANDAN_REQUIRE_SIGNATURE names: default, all, none, or a comma list."""
    value = setting.strip().lower()
    if value in ("", "default"):
        return STANDARD
    if value == "all":
        return frozenset(SENDER_FIELDS)
    if value == "none":
        return frozenset()
    named = {part.strip().upper() for part in setting.split(",") if part.strip()}
    unknown = sorted(named - set(SENDER_FIELDS))
    if unknown:
        raise ValueError(f"SANDAN_REQUIRE_SIGNATURE names {', '.join(unknown)}: not a message type the gateway "
                         f"takes ({', '.join(sorted(SENDER_FIELDS))}); or default, all, none")
    return frozenset(named)


class SignaturePolicy:
    """Which types must be signed, and the registry to check signatures against."""

    def __init__(self, required: frozenset[str], book: CertificateBook | None = None, clock=now_ms) -> None:
        self.required, self.clock = required, clock
        self.book = book if book is not None else CertificateBook()
        self.ready = asyncio.Event()  # set once the book holds the registry as it stood at start
        self.ready.set()

    def check(self, message_type: str, root: etree._Element, codes: frozenset[str]) -> Verified | None:
        """None for an unsigned message of a type that need not be signed; the signer when the
        signature verifies; SignatureError saying why not otherwise."""
        if not any(child.tag == SIGNATURE_TAG for child in root):
            if message_type in self.required:
                raise SignatureError(NOT_SIGNED, f"{message_type} must carry a ds:Signature made with a certificate "
                                                 f"registered for your enterprise (SANDAN_REQUIRE_SIGNATURE)")
            return None
        info = read_signature(root)
        number = info.key_name or embedded_certificate(info).number
        at = datetime.fromtimestamp(self.clock() / 1000, timezone.utc)
        certificate = self.book.check(number, codes, at)
        return verify_signature(info, root, certificate)


def refusal_text(error: SignatureError) -> str:
    """The returnInfo of a message refused for its signature: code, field, what."""
    return f"{error.reason} {error.field}: {error.message}"
