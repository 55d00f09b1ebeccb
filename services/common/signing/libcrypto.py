"""A thin ctypes binding to the libcrypto (OpenSSL 3) that Python's own ``ssl`` module links.

Only what signing needs: key and certificate parsing, EVP_DigestSign/EVP_DigestVerify with the
SM2 distinguishing id, key generation and self-signed certificates for test identities. The
``cryptography`` package cannot load SM2 keys and pure-Python SM2 is ~38 ms a verification, so
sandan calls libcrypto directly (bench/RESULTS.md, "Signatures").
"""
from __future__ import annotations

import ctypes
import ctypes.util
import ssl  # noqa: F401  (loads the libcrypto this process already uses)

_P = ctypes.c_void_p
_INT = ctypes.c_int
_SIZE = ctypes.c_size_t


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    lib = ctypes.CDLL(name)
    if lib.OpenSSL_version_num() < 0x30000000:
        raise ImportError(f"{name} is older than OpenSSL 3.0; sandan's signatures need 3.x")
    return lib


_lib = _load()


def _fn(name: str, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_lib.OpenSSL_version_num.restype = ctypes.c_ulong

BIO_s_mem = _fn("BIO_s_mem", _P)
BIO_new = _fn("BIO_new", _P, _P)
BIO_new_mem_buf = _fn("BIO_new_mem_buf", _P, ctypes.c_char_p, _INT)
BIO_free = _fn("BIO_free", _INT, _P)
BIO_ctrl = _fn("BIO_ctrl", ctypes.c_long, _P, _INT, ctypes.c_long, _P)
_BIO_CTRL_INFO = 3

ERR_clear_error = _fn("ERR_clear_error", None)
ERR_get_error = _fn("ERR_get_error", ctypes.c_ulong)
ERR_error_string_n = _fn("ERR_error_string_n", None, ctypes.c_ulong, ctypes.c_char_p, _SIZE)
CRYPTO_free = _fn("CRYPTO_free", None, _P, ctypes.c_char_p, _INT)

PEM_read_bio_PrivateKey = _fn("PEM_read_bio_PrivateKey", _P, _P, _P, _P, _P)
PEM_write_bio_PrivateKey = _fn("PEM_write_bio_PrivateKey", _INT, _P, _P, _P, _P, _INT, _P, _P)
d2i_AutoPrivateKey = _fn("d2i_AutoPrivateKey", _P, _P, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long)
EVP_PKEY_free = _fn("EVP_PKEY_free", None, _P)
EVP_PKEY_is_a = _fn("EVP_PKEY_is_a", _INT, _P, ctypes.c_char_p)
EVP_PKEY_CTX_new_from_name = _fn("EVP_PKEY_CTX_new_from_name", _P, _P, ctypes.c_char_p, _P)
EVP_PKEY_CTX_free = _fn("EVP_PKEY_CTX_free", None, _P)
EVP_PKEY_keygen_init = _fn("EVP_PKEY_keygen_init", _INT, _P)
EVP_PKEY_generate = _fn("EVP_PKEY_generate", _INT, _P, ctypes.POINTER(_P))
EVP_PKEY_CTX_set_rsa_keygen_bits = _fn("EVP_PKEY_CTX_set_rsa_keygen_bits", _INT, _P, _INT)
EVP_PKEY_CTX_set1_id = _fn("EVP_PKEY_CTX_set1_id", _INT, _P, ctypes.c_char_p, _SIZE)

EVP_sm3 = _fn("EVP_sm3", _P)
EVP_sha1 = _fn("EVP_sha1", _P)
EVP_sha256 = _fn("EVP_sha256", _P)
EVP_MD_CTX_new = _fn("EVP_MD_CTX_new", _P)
EVP_MD_CTX_free = _fn("EVP_MD_CTX_free", None, _P)
EVP_DigestSignInit = _fn("EVP_DigestSignInit", _INT, _P, ctypes.POINTER(_P), _P, _P, _P)
EVP_DigestVerifyInit = _fn("EVP_DigestVerifyInit", _INT, _P, ctypes.POINTER(_P), _P, _P, _P)
EVP_DigestSign = _fn("EVP_DigestSign", _INT, _P, _P, ctypes.POINTER(_SIZE), ctypes.c_char_p, _SIZE)
EVP_DigestVerify = _fn("EVP_DigestVerify", _INT, _P, ctypes.c_char_p, _SIZE, ctypes.c_char_p, _SIZE)

PEM_read_bio_X509 = _fn("PEM_read_bio_X509", _P, _P, _P, _P, _P)
PEM_write_bio_X509 = _fn("PEM_write_bio_X509", _INT, _P, _P)
d2i_X509 = _fn("d2i_X509", _P, _P, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long)
i2d_X509 = _fn("i2d_X509", _INT, _P, ctypes.POINTER(ctypes.c_char_p))
X509_new = _fn("X509_new", _P)
X509_free = _fn("X509_free", None, _P)
X509_get_pubkey = _fn("X509_get_pubkey", _P, _P)
X509_get_serialNumber = _fn("X509_get_serialNumber", _P, _P)
X509_get0_notBefore = _fn("X509_get0_notBefore", _P, _P)
X509_get0_notAfter = _fn("X509_get0_notAfter", _P, _P)
X509_getm_notBefore = _fn("X509_getm_notBefore", _P, _P)
X509_getm_notAfter = _fn("X509_getm_notAfter", _P, _P)
X509_get_subject_name = _fn("X509_get_subject_name", _P, _P)
X509_set_issuer_name = _fn("X509_set_issuer_name", _INT, _P, _P)
X509_set_version = _fn("X509_set_version", _INT, _P, ctypes.c_long)
X509_set_pubkey = _fn("X509_set_pubkey", _INT, _P, _P)
X509_sign_ctx = _fn("X509_sign_ctx", _INT, _P, _P)
X509_NAME_oneline = _fn("X509_NAME_oneline", _P, _P, _P, _INT)
X509_NAME_add_entry_by_txt = _fn("X509_NAME_add_entry_by_txt", _INT, _P, ctypes.c_char_p, _INT,
                                 ctypes.c_char_p, _INT, _INT, _INT)
ASN1_TIME_set = _fn("ASN1_TIME_set", _P, _P, ctypes.c_int64)
ASN1_STRING_get0_data = _fn("ASN1_STRING_get0_data", _P, _P)
ASN1_STRING_length = _fn("ASN1_STRING_length", _INT, _P)
ASN1_STRING_type = _fn("ASN1_STRING_type", _INT, _P)
ASN1_INTEGER_to_BN = _fn("ASN1_INTEGER_to_BN", _P, _P, _P)
BN_to_ASN1_INTEGER = _fn("BN_to_ASN1_INTEGER", _P, _P, _P)
BN_bin2bn = _fn("BN_bin2bn", _P, ctypes.c_char_p, _INT, _P)
BN_bn2hex = _fn("BN_bn2hex", _P, _P)
BN_free = _fn("BN_free", None, _P)

MBSTRING_UTF8 = 0x1000
V_ASN1_UTCTIME = 23
V_ASN1_GENERALIZEDTIME = 24


def last_error() -> str:
    """libcrypto's oldest queued error as text (and the queue emptied), for messages."""
    code = ERR_get_error()
    buf = ctypes.create_string_buffer(256)
    if code:
        ERR_error_string_n(code, buf, len(buf))
    ERR_clear_error()
    return buf.value.decode("ascii", "replace") or "no detail from libcrypto"


def take_string(ptr: int | None) -> str:
    """A char* that libcrypto allocated, as text, freed."""
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        CRYPTO_free(ptr, None, 0)


def bio_from(data: bytes) -> int:
    bio = BIO_new_mem_buf(data, len(data))
    if not bio:
        raise MemoryError("BIO_new_mem_buf")
    return bio


def bio_read_all(bio: int) -> bytes:
    ptr = ctypes.c_char_p()
    n = BIO_ctrl(bio, _BIO_CTRL_INFO, 0, ctypes.byref(ptr))
    return ctypes.string_at(ptr, n) if n > 0 else b""
