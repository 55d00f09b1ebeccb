"""Signing primitives: round trips, tampering, certificates, and an outside signer (openssl CLI)."""
from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from services.common.signing import crypto
from services.common.signing.crypto import (
    RSA_SHA1, RSA_SHA256, SM2_SM3, Certificate, PrivateKey, SignatureError, sign, test_identity, verify,
)

DATA = "三单对碰 payload".encode() * 50


@pytest.fixture(scope="module", params=["sm2", "rsa"])
def identity(request):
    key_pem, cert_pem = test_identity("EBP0000001", request.param)
    return PrivateKey.load(key_pem), Certificate.load(cert_pem)


def test_round_trip(identity):
    key, cert = identity
    assert key.algorithm == cert.algorithm
    verify(cert, DATA, sign(key, DATA), key.algorithm)


def test_changed_data_or_signature_is_a_signature_mismatch(identity):
    key, cert = identity
    signature = sign(key, DATA)
    with pytest.raises(SignatureError) as err:
        verify(cert, DATA[:-1] + b"X", signature, key.algorithm)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH and cert.number in err.value.message
    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(SignatureError) as err:
        verify(cert, DATA, bytes(flipped), key.algorithm)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH


def test_another_key_does_not_verify(identity):
    key, cert = identity
    other_key, _ = test_identity("OTHER", "sm2" if key.algorithm == SM2_SM3 else "rsa")
    with pytest.raises(SignatureError) as err:
        verify(cert, DATA, sign(PrivateKey.load(other_key), DATA), key.algorithm)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH


def test_algorithm_that_does_not_fit_the_key_is_refused(identity):
    key, cert = identity
    wrong = RSA_SHA256 if key.algorithm == SM2_SM3 else SM2_SM3
    with pytest.raises(SignatureError) as err:
        verify(cert, DATA, sign(key, DATA), wrong)
    assert err.value.reason == crypto.WRONG_ALGORITHM
    with pytest.raises(SignatureError) as err:
        verify(cert, DATA, b"x", "http://example.com/dsa-md5")
    assert err.value.reason == crypto.WRONG_ALGORITHM and "dsa-md5" in err.value.message


def test_rsa_sha1_for_older_keys():
    key_pem, cert_pem = test_identity("OLD", "rsa")
    key, cert = PrivateKey.load(key_pem), Certificate.load(cert_pem)
    signature = sign(key, DATA, RSA_SHA1)
    verify(cert, DATA, signature, RSA_SHA1)
    with pytest.raises(SignatureError):
        verify(cert, DATA, signature, RSA_SHA256)


def test_certificate_fields_and_validity():
    before = datetime(2025, 1, 1, tzinfo=timezone.utc)
    after = datetime(2026, 1, 31, tzinfo=timezone.utc)
    key_pem, cert_pem = test_identity("EBP0000001", "sm2", not_before=before, not_after=after)
    cert = Certificate.load(cert_pem)
    assert (cert.not_before, cert.not_after) == (before, after)
    assert cert.number == cert.number.upper() and not cert.number.startswith("0")
    assert "EBP0000001" in cert.subject
    assert Certificate.load(cert.der).number == cert.number  # DER as well as PEM
    cert.check_valid(datetime(2025, 6, 1, tzinfo=timezone.utc))
    with pytest.raises(SignatureError) as err:
        cert.check_valid(after + timedelta(seconds=1))
    assert err.value.reason == crypto.CERTIFICATE_EXPIRED and "expired on 2026-01-31" in err.value.message
    with pytest.raises(SignatureError) as err:
        cert.check_valid(before - timedelta(days=1))
    assert err.value.reason == crypto.CERTIFICATE_NOT_YET_VALID


def test_bad_key_and_certificate_bytes_are_malformed():
    for load in (PrivateKey.load, Certificate.load):
        with pytest.raises(SignatureError) as err:
            load(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        assert err.value.reason == crypto.MALFORMED
    with pytest.raises(SignatureError):
        Certificate.load(b"\x30\x03\x02\x01")




@pytest.fixture()
def cli_sm2(tmp_path):
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True)
    cert = tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", str(key), "-sm3", "-sigopt",
                    "distid:1234567812345678", "-subj", "/CN=CLI", "-days", "30", "-set_serial", "0x0ABC12",
                    "-out", str(cert)], check=True)
    return key, cert


def test_openssl_cli_sm2_signature_verifies_and_ours_verifies_in_openssl(tmp_path, cli_sm2):
    key, cert_path = cli_sm2
    cert = Certificate.load(cert_path.read_bytes())
    assert cert.number == "ABC12"  # serial 0x0ABC12: hex, upper case, no leading zero
    data = tmp_path / "data"
    data.write_bytes(DATA)
    sig = subprocess.run(["openssl", "dgst", "-sm3", "-sign", str(key), "-sigopt", "distid:1234567812345678",
                          str(data)], check=True, capture_output=True).stdout
    verify(cert, DATA, sig, SM2_SM3)
    ours = tmp_path / "ours.sig"
    ours.write_bytes(sign(PrivateKey.load(key.read_bytes()), DATA))
    pub = tmp_path / "pub.pem"
    subprocess.run(["openssl", "x509", "-in", str(cert_path), "-pubkey", "-noout", "-out", str(pub)], check=True)
    out = subprocess.run(["openssl", "dgst", "-sm3", "-verify", str(pub), "-sigopt", "distid:1234567812345678",
                          "-signature", str(ours), str(data)], capture_output=True, text=True)
    assert out.stdout.strip() == "Verified OK"


def test_raw_r_s_sm2_signature_is_accepted(cli_sm2):
    key, cert_path = cli_sm2
    cert = Certificate.load(cert_path.read_bytes())
    der = sign(PrivateKey.load(key.read_bytes()), DATA)
    # DER SEQUENCE { INTEGER r, INTEGER s } -> 32-byte r || 32-byte s
    pos, parts = 2, []
    for _ in range(2):
        length = der[pos + 1]
        parts.append(der[pos + 2:pos + 2 + length].lstrip(b"\0").rjust(32, b"\0"))
        pos += 2 + length
    verify(cert, DATA, b"".join(parts), SM2_SM3)
