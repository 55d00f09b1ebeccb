"""The gateway's signature rule: required types, the registry check, and the answer a refused
message gets (code, field, what)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.common.signing import crypto
from services.common.signing.crypto import Certificate, PrivateKey, test_identity
from services.common.signing.registry import CertificateBook, record_for
from services.common.signing.xmldsig import sign_ceb
from services.gateway.signatures import STANDARD, SignaturePolicy, required_types
from services.gateway.submission import CEB_XML, WHOLE_MESSAGE, examine

DATA = Path(__file__).resolve().parents[2] / "data" / "ceb"
INVENTORY = (DATA / "CEB621_inventory.xml").read_bytes()
ORDER = (DATA / "CEB311_order.xml").read_bytes()
AGENT, PLATFORM, OTHER = "3301961234", "3301963K27", "9999999999"
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def identity(name: str, algorithm: str = "sm2", **validity):
    validity = {"not_before": datetime(2025, 1, 1, tzinfo=timezone.utc),
                "not_after": datetime(2030, 1, 1, tzinfo=timezone.utc), **validity}
    key_pem, cert_pem = test_identity(name, algorithm, **validity)
    return PrivateKey.load(key_pem), Certificate.load(cert_pem)


AGENT_ID = identity(AGENT)
PLATFORM_ID = identity(PLATFORM, "rsa")
OTHER_ID = identity(OTHER)


def book(*bindings: tuple[Certificate, str], revoked: dict | None = None) -> CertificateBook:
    found = CertificateBook()
    for cert, enterprise in bindings:
        found.apply(record_for(cert, enterprise, by="test", at_ms=0,
                               revoked_at=(revoked or {}).get(cert.number)))
    return found


def policy(required=STANDARD, *bindings, revoked=None) -> SignaturePolicy:
    return SignaturePolicy(required, book(*bindings, revoked=revoked), clock=lambda: int(NOW.timestamp() * 1000))


def submit(payload: bytes, signatures: SignaturePolicy, message_type="CEB621", codes=frozenset({AGENT})):
    return examine(CEB_XML, message_type, payload, codes, "test", None, signatures)


def refusal(submission) -> str:
    assert not submission.accepted and len(submission.refused) == 1
    refused = submission.refused[0]
    assert refused.index == WHOLE_MESSAGE
    return refused.info


def test_required_types_setting():
    assert required_types("default") == required_types("") == frozenset({"CEB621", "CEB623", "CEB625", "CEB711"})
    assert "CEB311" in required_types("all") and required_types("none") == frozenset()
    assert required_types("ceb311, CEB621") == frozenset({"CEB311", "CEB621"})
    with pytest.raises(ValueError, match="CEB999"):
        required_types("CEB621,CEB999")


def test_signed_with_a_registered_certificate_is_accepted():
    key, cert = AGENT_ID
    submission = submit(sign_ceb(INVENTORY, key, cert), policy(STANDARD, (cert, AGENT)))
    assert submission.accepted and not submission.refused


def test_unsigned_621_is_refused_when_required_and_accepted_when_not():
    # the sample's placeholder signature removed: a message with no ds:Signature at all
    unsigned = INVENTORY[:INVENTORY.index(b"<ds:Signature")] + INVENTORY[INVENTORY.index(b"</ds:Signature>") + 15:]
    assert b"Signature" not in unsigned
    info = refusal(submit(unsigned, policy(STANDARD)))
    assert info.startswith("NOT_SIGNED ds:Signature: CEB621 must carry a ds:Signature")
    assert submit(unsigned, policy(frozenset())).accepted


def test_the_samples_placeholder_signature_does_not_pass():
    info = refusal(submit(INVENTORY, policy(STANDARD, (AGENT_ID[1], AGENT))))
    assert info.startswith("MALFORMED ds:Signature: ds:DigestValue is empty")


def test_another_enterprises_certificate_is_refused():
    key, cert = OTHER_ID
    info = refusal(submit(sign_ceb(INVENTORY, key, cert), policy(STANDARD, (cert, OTHER), (AGENT_ID[1], AGENT))))
    assert info == (f"WRONG_ENTERPRISE ds:KeyInfo/ds:KeyName: certificate {cert.number} is registered for another "
                    f"enterprise, not for {AGENT}")


def test_a_key_that_is_not_the_registered_certificates_is_a_signature_mismatch():
    # signed with another key but naming the agent's registered certificate
    other_key, _ = OTHER_ID
    _, cert = AGENT_ID
    info = refusal(submit(sign_ceb(INVENTORY, other_key, cert), policy(STANDARD, (cert, AGENT))))
    assert info.startswith(f"SIGNATURE_MISMATCH ds:SignatureValue: the signature does not verify with certificate "
                           f"{cert.number}")


def test_unknown_certificate():
    key, cert = AGENT_ID
    info = refusal(submit(sign_ceb(INVENTORY, key, cert), policy(STANDARD)))
    assert info == (f"UNKNOWN_CERTIFICATE ds:KeyInfo/ds:KeyName: certificate {cert.number} is not registered "
                    f"(sandan certs add)")


def test_expired_and_not_yet_valid_certificates_are_refused_with_the_date():
    key, cert = identity(AGENT, not_before=datetime(2025, 1, 1, tzinfo=timezone.utc),
                         not_after=datetime(2026, 1, 31, tzinfo=timezone.utc))
    info = refusal(submit(sign_ceb(INVENTORY, key, cert), policy(STANDARD, (cert, AGENT))))
    assert info == (f"CERTIFICATE_EXPIRED ds:KeyInfo/ds:KeyName: certificate {cert.number} expired on "
                    f"2026-01-31 00:00:00 UTC")
    key, cert = identity(AGENT, not_before=NOW + timedelta(days=2))
    info = refusal(submit(sign_ceb(INVENTORY, key, cert), policy(STANDARD, (cert, AGENT))))
    assert info.startswith("CERTIFICATE_NOT_YET_VALID ds:KeyInfo/ds:KeyName:")


def test_revoked_certificate_is_refused_with_number_and_date():
    key, cert = AGENT_ID
    revoked_at = int(datetime(2026, 2, 14, 8, 0, tzinfo=timezone.utc).timestamp() * 1000)
    info = refusal(submit(sign_ceb(INVENTORY, key, cert), policy(STANDARD, (cert, AGENT),
                                                                 revoked={cert.number: revoked_at})))
    assert info == (f"CERTIFICATE_REVOKED ds:KeyInfo/ds:KeyName: certificate {cert.number} was revoked on "
                    f"2026-02-14 08:00:00 UTC")


def test_one_changed_character_is_a_digest_mismatch():
    key, cert = AGENT_ID
    signed = sign_ceb(INVENTORY, key, cert)
    tampered = signed.replace(b"<ceb:qty>", b"<ceb:qty>1", 1)
    info = refusal(submit(tampered, policy(STANDARD, (cert, AGENT))))
    assert info.startswith("DIGEST_MISMATCH ds:SignedInfo/ds:Reference/ds:DigestValue:")


def test_a_signature_on_an_unrequired_type_is_still_verified():
    key, cert = PLATFORM_ID
    signed = sign_ceb(ORDER, key, cert)
    codes = frozenset({PLATFORM})
    assert submit(signed, policy(STANDARD, (cert, PLATFORM)), "CEB311", codes).accepted
    assert submit(ORDER, policy(STANDARD), "CEB311", codes).accepted  # unsigned, not required
    tampered = signed.replace(b"<ceb:freight>10.00", b"<ceb:freight>10.01")
    info = refusal(submit(tampered, policy(STANDARD, (cert, PLATFORM)), "CEB311", codes))
    assert info.startswith("DIGEST_MISMATCH")


def test_wrong_algorithm_is_refused():
    key, cert = AGENT_ID
    signed = sign_ceb(INVENTORY, key, cert).replace(crypto.SM2_SM3.encode(), b"http://example.com/#dsa-md5")
    info = refusal(submit(signed, policy(STANDARD, (cert, AGENT))))
    assert info.startswith("WRONG_ALGORITHM ds:SignedInfo/ds:SignatureMethod: signature method "
                           "'http://example.com/#dsa-md5' is not supported")


def test_the_books_certificate_is_parsed_once_and_revocation_keeps_it():
    _, cert = AGENT_ID
    found = book((cert, AGENT))
    first = found.get(cert.number).certificate
    found.apply(record_for(cert, AGENT, by="test", at_ms=1, revoked_at=1))
    assert found.get(cert.number).certificate is first and found.get(cert.number).revoked_at == 1
    assert [e.number for e in found.of_enterprise(AGENT)] == [cert.number] and found.of_enterprise(OTHER) == []
