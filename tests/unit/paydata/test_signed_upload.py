"""The platform responder's signed upload, checked by customs against registered certificates."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from services.common.signing.crypto import Certificate, PrivateKey, test_identity
from services.paydata import protocol, signature
from services.paydata.protocol import UploadError, parse_upload
from services.common.signing.registry import CertificateBook, record_for
from services.paydata_platform.responder import parse_open_request, read_record, upload_text
from tests.unit.paydata.samples import EBP, raw_record, text

NOW = datetime.now(timezone.utc)


def book(*entries) -> CertificateBook:
    """A registry holding (certificate, enterprise, revoked_at_ms) entries."""
    found = CertificateBook()
    for cert, enterprise, revoked_at in entries:
        found.apply(record_for(cert, enterprise, by="test", at_ms=0, revoked_at=revoked_at))
    return found


@pytest.fixture(scope="module", params=["sm2", "rsa"])
def identity(request):
    key_pem, cert_pem = test_identity(EBP, request.param)
    return PrivateKey.load(key_pem), Certificate.load(cert_pem)


def _upload(key, cert, session_id="S-0001/原样", record=None) -> str:
    record = record or read_record(text(raw_record()).replace('"338.21"', "338.21"))
    return upload_text(record, session_id, 1709265600000, key, cert.number)


def test_the_upload_verifies_and_keeps_customs_session_id_unchanged(identity):
    key, cert = identity
    raw = _upload(key, cert)
    upload = parse_upload(raw)
    assert upload.session_id == "S-0001/原样" and json.loads(raw)["sessionID"] == "S-0001/原样"
    signature.check(upload, EBP, book((cert, EBP, None)), NOW)


def test_an_upload_signed_by_another_key_is_refused(identity):
    key, cert = identity
    other_key = PrivateKey.load(test_identity("intruder", "sm2")[0])
    upload = parse_upload(_upload(other_key, cert))  # names the platform's certificate, signed by another key
    with pytest.raises(UploadError) as caught:
        signature.check(upload, EBP, book((cert, EBP, None)), NOW)
    assert caught.value.code == protocol.SIGNATURE and caught.value.field == "signValue"


def test_one_changed_character_of_the_data_fails_the_signature(identity):
    key, cert = identity
    raw = _upload(key, cert).replace("338.21", "338.22")
    with pytest.raises(UploadError) as caught:
        signature.check(parse_upload(raw), EBP, book((cert, EBP, None)), NOW)
    assert caught.value.code == protocol.SIGNATURE


def test_unknown_foreign_revoked_and_expired_certificates_are_refused_saying_which(identity):
    key, cert = identity
    upload = parse_upload(_upload(key, cert))
    other = Certificate.load(test_identity(EBP, "sm2")[1])
    for registry, reason in [(book((other, EBP, None)), "UNKNOWN_CERTIFICATE"),
                             (book((cert, "OTHERPLATF", None)), "WRONG_ENTERPRISE"),
                             (book((cert, EBP, 1_000)), "CERTIFICATE_REVOKED")]:
        with pytest.raises(UploadError, match=reason) as caught:
            signature.check(upload, EBP, registry, NOW)
        assert caught.value.code == protocol.CERTIFICATE and caught.value.field == "certNo"
    with pytest.raises(UploadError, match="CERTIFICATE_EXPIRED"):
        signature.check(upload, EBP, book((cert, EBP, None)), NOW + timedelta(days=4000))


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"orderNo":"O1","sessionID":"S1","serviceTime":5}', ("O1", "S1", 5)),
    ('{"orderNo":" O1 ","sessionID":" S1 "}', ("O1", " S1 ", None)),
    ('{"orderNo":"O1"}', None), ("garbage", None), (None, None), ('["O1"]', None),
])
def test_open_requests_are_read_and_anything_else_is_no_request(raw, expected):
    got = parse_open_request(raw)
    assert (None if got is None else (got.order_no, got.session_id, got.service_time)) == expected
