"""The certificate registry's state: which certificate numbers belong to which enterprise.

Pure. Records come from the compacted ``certificates`` topic (Avro ``sandan.Certificate``,
keyed by number; the latest record of a number is its state); a ``CertificateBook`` holds them
with each certificate parsed once, and answers the gateway's one question: may this
certificate sign for this enterprise at this instant?
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from services.common.signing.crypto import (
    CERTIFICATE_REVOKED, UNKNOWN_CERTIFICATE, WRONG_ENTERPRISE, Certificate, SignatureError,
)
from services.common.signing.xmldsig import normalise_number

TOPIC = "certificates"
SCHEMA = "sandan.Certificate"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Entry:
    number: str
    enterprise: str
    certificate: Certificate
    revoked_at: int | None  # ms since epoch

    def to_json(self) -> dict:
        cert = self.certificate
        return {"number": self.number, "enterprise": self.enterprise, "subject": cert.subject,
                "algorithm": cert.algorithm.rsplit("#", 1)[-1], "notBefore": cert.not_before.isoformat(),
                "notAfter": cert.not_after.isoformat(),
                "revokedAt": None if self.revoked_at is None else _day(self.revoked_at)}


def record_for(certificate: Certificate, enterprise: str, *, by: str, at_ms: int,
               revoked_at: int | None = None) -> dict:
    """The topic record binding ``certificate`` to ``enterprise``."""
    return {"number": certificate.number, "enterprise": enterprise.strip(), "der": certificate.der,
            "notBefore": _ms(certificate.not_before), "notAfter": _ms(certificate.not_after),
            "revokedAt": revoked_at, "changedAt": at_ms, "changedBy": by}


class CertificateBook:
    """Every registered certificate by number, parsed once."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def apply(self, record: dict) -> Entry:
        number = normalise_number(record["number"])
        known = self.entries.get(number)
        if known is not None and known.certificate.der == record["der"]:
            certificate = known.certificate  # a revocation: the certificate itself is unchanged
        else:
            certificate = Certificate.load(record["der"])
        entry = Entry(number, record["enterprise"], certificate, record.get("revokedAt"))
        self.entries[number] = entry
        return entry

    def get(self, number: str) -> Entry | None:
        return self.entries.get(normalise_number(number))

    def of_enterprise(self, enterprise: str | None = None) -> list[Entry]:
        return sorted((e for e in self.entries.values() if enterprise is None or e.enterprise == enterprise),
                      key=lambda e: (e.enterprise, e.number))

    def check(self, number: str, enterprises: frozenset[str] | set[str], at: datetime) -> Certificate:
        """The certificate ``number`` if it may sign for one of ``enterprises`` at ``at``; else
        SignatureError (unknown, another enterprise's, revoked, expired or not yet valid)."""
        entry = self.get(number)
        if entry is None:
            raise SignatureError(UNKNOWN_CERTIFICATE, f"certificate {normalise_number(number)} is not registered "
                                                      f"(sandan certs add)")
        if entry.enterprise not in enterprises:
            raise SignatureError(WRONG_ENTERPRISE, f"certificate {entry.number} is registered for another "
                                                   f"enterprise, not for {', '.join(sorted(enterprises))}")
        if entry.revoked_at is not None and entry.revoked_at <= _ms(at):
            raise SignatureError(CERTIFICATE_REVOKED, f"certificate {entry.number} was revoked on "
                                                      f"{_day(entry.revoked_at)}")
        entry.certificate.check_valid(at)
        return entry.certificate
