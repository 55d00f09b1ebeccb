"""Signing primitives: keys, certificates, sign and verify, for SM2-SM3 and RSA.

Pure: no Kafka, Redis or gRPC. The work is done by libcrypto (see ``libcrypto``).

SM2 signatures use the standard's default user id ``1234567812345678`` (GB/T 32918 / GM/T 0009)
in the Z value, as the customs cards and ``openssl dgst -sm3 -sigopt distid:1234567812345678`` do.
``sign`` returns a DER ``SEQUENCE {r, s}`` for SM2 (what libcrypto makes); ``verify`` also
accepts the raw 64-byte ``r || s`` form that some signing devices produce.

The certificate number (``Certificate.number``) is the serial number in hexadecimal, upper
case, without leading zeros (what ``openssl x509 -serial`` prints, less leading zeros).
"""
from __future__ import annotations

import ctypes
import os
import threading
from datetime import datetime, timedelta, timezone

from services.common.signing import libcrypto as lc

SM2_SM3 = "http://www.chinaport.gov.cn/2022/04/xmldsig#sm2-sm3"
SM3 = "http://www.chinaport.gov.cn/2022/04/xmldsig#sm3"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

SM2_DEFAULT_ID = b"1234567812345678"

# SignatureMethod URI -> (key kind, message digest name); DigestMethod URI -> hashlib name.
SIGNATURE_METHODS = {SM2_SM3: ("SM2", "sm3"), RSA_SHA256: ("RSA", "sha256"), RSA_SHA1: ("RSA", "sha1")}
DIGEST_METHODS = {SM3: "sm3", SHA256: "sha256", SHA1: "sha1"}
_MD = {"sm3": lc.EVP_sm3, "sha256": lc.EVP_sha256, "sha1": lc.EVP_sha1}

# Reasons a signature is not accepted (SignatureError.reason).
DIGEST_MISMATCH = "DIGEST_MISMATCH"
SIGNATURE_MISMATCH = "SIGNATURE_MISMATCH"
UNKNOWN_CERTIFICATE = "UNKNOWN_CERTIFICATE"
CERTIFICATE_EXPIRED = "CERTIFICATE_EXPIRED"
CERTIFICATE_NOT_YET_VALID = "CERTIFICATE_NOT_YET_VALID"
CERTIFICATE_REVOKED = "CERTIFICATE_REVOKED"
WRONG_ALGORITHM = "WRONG_ALGORITHM"
NOT_SIGNED = "NOT_SIGNED"
WRONG_ENTERPRISE = "WRONG_ENTERPRISE"
MALFORMED = "MALFORMED"


# Where in a CEB message's ds:Signature each reason points (SignatureError.field).
FIELD_OF = {
    DIGEST_MISMATCH: "ds:SignedInfo/ds:Reference/ds:DigestValue", SIGNATURE_MISMATCH: "ds:SignatureValue",
    UNKNOWN_CERTIFICATE: "ds:KeyInfo/ds:KeyName", CERTIFICATE_EXPIRED: "ds:KeyInfo/ds:KeyName",
    CERTIFICATE_NOT_YET_VALID: "ds:KeyInfo/ds:KeyName", CERTIFICATE_REVOKED: "ds:KeyInfo/ds:KeyName",
    WRONG_ENTERPRISE: "ds:KeyInfo/ds:KeyName", WRONG_ALGORITHM: "ds:SignedInfo/ds:SignatureMethod",
    NOT_SIGNED: "ds:Signature", MALFORMED: "ds:Signature",
}


class SignatureError(Exception):
    """A signature that is not accepted: ``reason`` is one of the codes above, ``message`` one
    line saying exactly what (never personal data), ``field`` where (in a CEB message)."""

    def __init__(self, reason: str, message: str, field: str | None = None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.field = field or FIELD_OF.get(reason, "ds:Signature")


class PrivateKey:
    """An SM2 or RSA private key held by libcrypto."""

    def __init__(self, handle: int):
        self._handle = handle
        if lc.EVP_PKEY_is_a(handle, b"SM2"):
            self.algorithm = SM2_SM3
        elif lc.EVP_PKEY_is_a(handle, b"RSA"):
            self.algorithm = RSA_SHA256
        else:
            lc.EVP_PKEY_free(handle)
            self._handle = None
            raise SignatureError(WRONG_ALGORITHM, "the key is neither SM2 nor RSA")

    @classmethod
    def load(cls, pem: bytes) -> "PrivateKey":
        bio = lc.bio_from(pem)
        try:
            handle = lc.PEM_read_bio_PrivateKey(bio, None, None, None)
        finally:
            lc.BIO_free(bio)
        if not handle:
            raise SignatureError(MALFORMED, f"not an unencrypted PEM private key ({lc.last_error()})")
        return cls(handle)

    @classmethod
    def generate(cls, algorithm: str = "sm2") -> "PrivateKey":
        """A fresh key: ``sm2`` or ``rsa`` (2048 bits)."""
        name = {"sm2": b"SM2", "rsa": b"RSA"}.get(algorithm.lower())
        if name is None:
            raise SignatureError(WRONG_ALGORITHM, f"cannot generate {algorithm!r} keys (sm2 or rsa)")
        ctx = lc.EVP_PKEY_CTX_new_from_name(None, name, None)
        out = ctypes.c_void_p()
        try:
            if lc.EVP_PKEY_keygen_init(ctx) != 1 or (
                    name == b"RSA" and lc.EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) != 1) \
                    or lc.EVP_PKEY_generate(ctx, ctypes.byref(out)) != 1:
                raise SignatureError(MALFORMED, f"key generation failed ({lc.last_error()})")
        finally:
            lc.EVP_PKEY_CTX_free(ctx)
        return cls(out.value)

    def pem(self) -> bytes:
        bio = lc.BIO_new(lc.BIO_s_mem())
        try:
            if lc.PEM_write_bio_PrivateKey(bio, self._handle, None, None, 0, None, None) != 1:
                raise SignatureError(MALFORMED, f"cannot write the key ({lc.last_error()})")
            return lc.bio_read_all(bio)
        finally:
            lc.BIO_free(bio)

    def __del__(self):
        if getattr(self, "_handle", None):
            lc.EVP_PKEY_free(self._handle)
            self._handle = None


class PublicKey:
    """The public key of a certificate (libcrypto handle)."""

    def __init__(self, handle: int):
        self._handle = handle
        self.kind = "SM2" if lc.EVP_PKEY_is_a(handle, b"SM2") else (
            "RSA" if lc.EVP_PKEY_is_a(handle, b"RSA") else "other")

    def __del__(self):
        if getattr(self, "_handle", None):
            lc.EVP_PKEY_free(self._handle)
            self._handle = None


def _asn1_time(ptr: int) -> datetime:
    raw = ctypes.string_at(lc.ASN1_STRING_get0_data(ptr), lc.ASN1_STRING_length(ptr)).decode("ascii")
    if lc.ASN1_STRING_type(ptr) == lc.V_ASN1_UTCTIME:  # YYMMDDhhmmssZ; RFC 5280: 50-99 are 19xx
        year = int(raw[:2])
        raw = f"{1900 + year if year >= 50 else 2000 + year}{raw[2:]}"
    return datetime.strptime(raw[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


class Certificate:
    """An X.509 certificate: number, validity, subject and public key."""

    def __init__(self, handle: int):
        self._handle = handle
        bn = lc.ASN1_INTEGER_to_BN(lc.X509_get_serialNumber(handle), None)
        try:
            number = lc.take_string(lc.BN_bn2hex(bn))
        finally:
            lc.BN_free(bn)
        self.number = number.lstrip("0").upper() or "0"
        self.not_before = _asn1_time(lc.X509_get0_notBefore(handle))
        self.not_after = _asn1_time(lc.X509_get0_notAfter(handle))
        self.subject = lc.take_string(lc.X509_NAME_oneline(lc.X509_get_subject_name(handle), None, 0))
        pub = lc.X509_get_pubkey(handle)
        if not pub:
            raise SignatureError(MALFORMED, f"certificate {self.number}: unreadable public key ({lc.last_error()})")
        self.public_key = PublicKey(pub)
        out = ctypes.c_char_p()
        n = lc.i2d_X509(handle, ctypes.byref(out))
        try:
            self.der = ctypes.string_at(out, n)
        finally:
            lc.CRYPTO_free(out, None, 0)

    @classmethod
    def load(cls, pem_or_der: bytes) -> "Certificate":
        data = bytes(pem_or_der)
        if b"-----BEGIN" in data:
            bio = lc.bio_from(data)
            try:
                handle = lc.PEM_read_bio_X509(bio, None, None, None)
            finally:
                lc.BIO_free(bio)
        else:
            buf = ctypes.c_char_p(data)
            handle = lc.d2i_X509(None, ctypes.byref(buf), len(data))
        if not handle:
            raise SignatureError(MALFORMED, f"not an X.509 certificate in PEM or DER ({lc.last_error()})")
        return cls(handle)

    @property
    def pem(self) -> bytes:
        import base64
        body = base64.encodebytes(self.der).replace(b"\n", b"")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"

    @property
    def algorithm(self) -> str:
        """The SignatureMethod this certificate's key signs with (RSA keys: RSA-SHA256)."""
        return SM2_SM3 if self.public_key.kind == "SM2" else RSA_SHA256

    def check_valid(self, at: datetime) -> None:
        """SignatureError unless ``at`` (aware) falls within the certificate's validity."""
        if at > self.not_after:
            raise SignatureError(CERTIFICATE_EXPIRED, f"certificate {self.number} expired on "
                                                      f"{self.not_after:%Y-%m-%d %H:%M:%S} UTC")
        if at < self.not_before:
            raise SignatureError(CERTIFICATE_NOT_YET_VALID, f"certificate {self.number} is valid only "
                                                            f"from {self.not_before:%Y-%m-%d %H:%M:%S} UTC")

    def __del__(self):
        if getattr(self, "_handle", None):
            lc.X509_free(self._handle)
            self._handle = None


def _method(algorithm: str) -> tuple[str, str]:
    method = SIGNATURE_METHODS.get(algorithm)
    if method is None:
        raise SignatureError(WRONG_ALGORITHM, f"signature method {algorithm[:100]!r} is not supported "
                                              f"(sm2-sm3, rsa-sha256, rsa-sha1)")
    return method


def _init(ctx: int, key_handle: int, kind: str, md: str, signing: bool) -> None:
    pctx = ctypes.c_void_p()
    init = lc.EVP_DigestSignInit if signing else lc.EVP_DigestVerifyInit
    if init(ctx, ctypes.byref(pctx), _MD[md](), None, key_handle) != 1:
        raise SignatureError(MALFORMED, f"cannot start {md} {'signing' if signing else 'verification'} "
                                        f"({lc.last_error()})")
    # The SM2 Z value hashes the user id; libcrypto computes it on the first update, so setting
    # the id after init is in time.
    if kind == "SM2" and lc.EVP_PKEY_CTX_set1_id(pctx, SM2_DEFAULT_ID, len(SM2_DEFAULT_ID)) != 1:
        raise SignatureError(MALFORMED, f"cannot set the SM2 user id ({lc.last_error()})")


def sign(key: PrivateKey, data: bytes, algorithm: str | None = None) -> bytes:
    """The raw signature of ``data`` (SM2: DER; RSA: PKCS#1 v1.5)."""
    algorithm = algorithm or key.algorithm
    kind, md = _method(algorithm)
    if (kind == "SM2") != (key.algorithm == SM2_SM3):
        raise SignatureError(WRONG_ALGORITHM, f"a {'SM2' if key.algorithm == SM2_SM3 else 'RSA'} key "
                                              f"cannot sign {algorithm}")
    ctx = lc.EVP_MD_CTX_new()
    try:
        _init(ctx, key._handle, kind, md, True)
        size = ctypes.c_size_t(0)
        if lc.EVP_DigestSign(ctx, None, ctypes.byref(size), data, len(data)) != 1:
            raise SignatureError(MALFORMED, f"signing failed ({lc.last_error()})")
        buf = ctypes.create_string_buffer(size.value)
        if lc.EVP_DigestSign(ctx, buf, ctypes.byref(size), data, len(data)) != 1:
            raise SignatureError(MALFORMED, f"signing failed ({lc.last_error()})")
        return buf.raw[:size.value]
    finally:
        lc.EVP_MD_CTX_free(ctx)


def _der_integer(value: bytes) -> bytes:
    value = value.lstrip(b"\0") or b"\0"
    if value[0] & 0x80:
        value = b"\0" + value
    return b"\x02" + bytes([len(value)]) + value


def _sm2_der(signature: bytes) -> bytes:
    """A raw 64-byte r || s SM2 signature as DER; anything else unchanged."""
    if len(signature) != 64 or signature[0] == 0x30 and signature[1] in (0x44, 0x45, 0x46):
        return signature
    body = _der_integer(signature[:32]) + _der_integer(signature[32:])
    return b"\x30" + bytes([len(body)]) + body


def verify(cert: Certificate, data: bytes, signature: bytes, algorithm: str) -> None:
    """Nothing when ``signature`` over ``data`` verifies with ``cert``'s key; else SignatureError."""
    kind, md = _method(algorithm)
    if cert.public_key.kind != kind:
        raise SignatureError(WRONG_ALGORITHM, f"certificate {cert.number} holds a {cert.public_key.kind} "
                                              f"key, the message names {algorithm}")
    if kind == "SM2":
        signature = _sm2_der(signature)
    ctx = lc.EVP_MD_CTX_new()
    try:
        _init(ctx, cert.public_key._handle, kind, md, False)
        ok = lc.EVP_DigestVerify(ctx, signature, len(signature), data, len(data))
    finally:
        lc.EVP_MD_CTX_free(ctx)
    if ok != 1:
        lc.ERR_clear_error()
        raise SignatureError(SIGNATURE_MISMATCH, f"the signature does not verify with certificate "
                                                 f"{cert.number} ({algorithm.rsplit('#', 1)[-1]})")


_serial_lock = threading.Lock()


def make_certificate(key: PrivateKey, name: str, *, not_before: datetime | None = None,
                     not_after: datetime | None = None, serial: int | None = None) -> Certificate:
    """A self-signed certificate for ``key`` with subject CN=``name`` (demo and tests)."""
    now = datetime.now(timezone.utc)
    not_before = not_before or now - timedelta(days=1)
    not_after = not_after or now + timedelta(days=3650)
    serial = serial or int.from_bytes(os.urandom(16), "big") >> 1
    kind, md = _method(key.algorithm)
    x = lc.X509_new()
    ctx = lc.EVP_MD_CTX_new()
    try:
        lc.X509_set_version(x, 2)
        raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
        bn = lc.BN_bin2bn(raw, len(raw), None)
        lc.BN_to_ASN1_INTEGER(bn, lc.X509_get_serialNumber(x))
        lc.BN_free(bn)
        lc.ASN1_TIME_set(lc.X509_getm_notBefore(x), int(not_before.timestamp()))
        lc.ASN1_TIME_set(lc.X509_getm_notAfter(x), int(not_after.timestamp()))
        subject = lc.X509_get_subject_name(x)
        encoded = name.encode("utf-8")
        lc.X509_NAME_add_entry_by_txt(subject, b"CN", lc.MBSTRING_UTF8, encoded, len(encoded), -1, 0)
        lc.X509_set_issuer_name(x, subject)
        lc.X509_set_pubkey(x, key._handle)
        _init(ctx, key._handle, kind, md, True)
        if lc.X509_sign_ctx(x, ctx) <= 0:
            raise SignatureError(MALFORMED, f"cannot sign the certificate ({lc.last_error()})")
        out = ctypes.c_char_p()
        n = lc.i2d_X509(x, ctypes.byref(out))
        der = ctypes.string_at(out, n)
        lc.CRYPTO_free(out, None, 0)
    finally:
        lc.EVP_MD_CTX_free(ctx)
        lc.X509_free(x)
    return Certificate.load(der)


def test_identity(name: str, algorithm: str = "sm2", *, not_before: datetime | None = None,
                  not_after: datetime | None = None) -> tuple[bytes, bytes]:
    """(key PEM, self-signed certificate PEM) of a fresh ``sm2`` or ``rsa`` key, for demo/tests."""
    key = PrivateKey.generate(algorithm)
    cert = make_certificate(key, name, not_before=not_before, not_after=not_after)
    return key.pem(), cert.pem


test_identity.__test__ = False  # a helper, not a pytest test
