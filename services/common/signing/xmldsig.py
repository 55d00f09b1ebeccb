"""Enveloped XML signatures (``ds:Signature``) of CEB messages: sign one, verify one.

As in the standard's samples: the signature is the last child of the message's root element
(after ``BaseTransfer``/``BaseSubscribe``/``ExtendMessage``, where the XSD puts it), C14N 1.0
without comments, one ``Reference URI=""`` with the enveloped-signature transform, and
``KeyInfo`` holding ``KeyName`` (the certificate number) and ``X509Data/X509Certificate``.

Verification checks the SignatureValue over the canonical SignedInfo first (a changed
SignatureValue or DigestValue is ``SIGNATURE_MISMATCH``), then the digest of the message
without its signature (any changed character of the signed content is ``DIGEST_MISMATCH``).
Which certificate to trust is the caller's choice (``verify_ceb(..., certificate=...)``):
the gateway takes it from the certificate registry by the KeyName, never from the message.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass

from lxml import etree

from services.common.ceb import safe_xml
from services.common.signing.crypto import (
    DIGEST_METHODS, MALFORMED, NOT_SIGNED, RSA_SHA1, RSA_SHA256, SHA1, SHA256, SIGNATURE_METHODS, SM2_SM3,
    SM3, WRONG_ALGORITHM, DIGEST_MISMATCH, Certificate, PrivateKey, SignatureError, sign, verify,
)

DS_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_DS = f"{{{DS_NAMESPACE}}}"
SIGNATURE_TAG = _DS + "Signature"
# The digest that goes with each signature method when sandan signs.
DIGEST_FOR = {SM2_SM3: SM3, RSA_SHA256: SHA256, RSA_SHA1: SHA1}
_MAX_ALGORITHM_CHARS = 100


@dataclass(frozen=True)
class SignatureInfo:
    """What a message's ``ds:Signature`` says, read but not yet verified."""
    element: etree._Element
    signed_info: etree._Element
    method: str           # SignatureMethod URI
    digest_method: str    # DigestMethod URI
    digest: bytes
    value: bytes          # the raw signature
    key_name: str | None  # KeyName, normalised like a certificate number
    certificate_der: bytes | None  # the embedded X509Certificate


@dataclass(frozen=True)
class Verified:
    number: str
    algorithm: str


def normalise_number(number: str) -> str:
    """A certificate number as the registry keys it: hexadecimal, upper case, no leading zeros."""
    cleaned = number.strip().upper().replace(":", "")
    if cleaned.startswith("0X"):
        cleaned = cleaned[2:]
    return cleaned.lstrip("0") or "0"


def _b64(element: etree._Element | None, what: str) -> bytes:
    text = "".join((element.text or "").split()) if element is not None else ""
    if not text:
        raise SignatureError(MALFORMED, f"ds:{what} is empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(MALFORMED, f"ds:{what} is not base64") from None


def _one(parent: etree._Element, path: str, what: str) -> etree._Element:
    found = parent.findall(path)
    if len(found) != 1:
        raise SignatureError(MALFORMED, f"ds:Signature needs exactly one {what}, found {len(found)}")
    return found[0]


def _algorithm(element: etree._Element, what: str) -> str:
    value = element.get("Algorithm") or ""
    if not value:
        raise SignatureError(MALFORMED, f"ds:{what} has no Algorithm")
    return value[:_MAX_ALGORITHM_CHARS]


def read_signature(root: etree._Element) -> SignatureInfo:
    """The message's signature (NOT_SIGNED when it has none; MALFORMED/WRONG_ALGORITHM when it
    is not one sandan can check)."""
    found = [child for child in root if child.tag == SIGNATURE_TAG]
    if not found:
        raise SignatureError(NOT_SIGNED, f"{etree.QName(root).localname} carries no ds:Signature")
    if len(found) > 1:
        raise SignatureError(MALFORMED, f"{etree.QName(root).localname} carries {len(found)} ds:Signature")
    element = found[0]
    signed_info = _one(element, _DS + "SignedInfo", "ds:SignedInfo")
    c14n = _algorithm(_one(signed_info, _DS + "CanonicalizationMethod", "ds:CanonicalizationMethod"),
                      "CanonicalizationMethod")
    if c14n != C14N_10:
        raise SignatureError(WRONG_ALGORITHM, f"canonicalization {c14n!r} is not supported (C14N 1.0)")
    method = _algorithm(_one(signed_info, _DS + "SignatureMethod", "ds:SignatureMethod"), "SignatureMethod")
    if method not in SIGNATURE_METHODS:
        raise SignatureError(WRONG_ALGORITHM, f"signature method {method!r} is not supported "
                                              f"(sm2-sm3, rsa-sha256, rsa-sha1)")
    reference = _one(signed_info, _DS + "Reference", "ds:Reference")
    if reference.get("URI") != "":
        raise SignatureError(MALFORMED, f"ds:Reference URI is {reference.get('URI')!r:.60}; a CEB message "
                                        f"signs the whole document (URI=\"\")")
    transforms = [_algorithm(t, "Transform") for t in reference.findall(f"{_DS}Transforms/{_DS}Transform")]
    if ENVELOPED not in transforms or any(t not in (ENVELOPED, C14N_10) for t in transforms):
        raise SignatureError(WRONG_ALGORITHM, f"ds:Reference transforms {transforms!r:.150} are not the "
                                              f"enveloped-signature transform")
    digest_method = _algorithm(_one(reference, _DS + "DigestMethod", "ds:DigestMethod"), "DigestMethod")
    if digest_method not in DIGEST_METHODS:
        raise SignatureError(WRONG_ALGORITHM, f"digest method {digest_method!r} is not supported (sm3, sha256, sha1)")
    digest = _b64(_one(reference, _DS + "DigestValue", "ds:DigestValue"), "DigestValue")
    value = _b64(_one(element, _DS + "SignatureValue", "ds:SignatureValue"), "SignatureValue")
    names = element.findall(f"{_DS}KeyInfo/{_DS}KeyName")
    key_name = normalise_number(names[0].text or "") if names and (names[0].text or "").strip() else None
    certs = element.findall(f"{_DS}KeyInfo/{_DS}X509Data/{_DS}X509Certificate")
    der = _b64(certs[0], "X509Certificate") if certs else None
    return SignatureInfo(element, signed_info, method, digest_method, digest, value, key_name, der)


@contextmanager
def _detached(element: etree._Element):
    """The document with ``element`` taken out (enveloped-signature transform), put back after.

    lxml keeps the text after an element as its ``tail``; that text belongs to the parent in
    the XML data model, so it stays in the document while the element is out."""
    parent = element.getparent()
    index = parent.index(element)
    previous = element.getprevious()
    tail = element.tail
    saved = previous.tail if previous is not None else parent.text
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)
    try:
        yield
    finally:
        if previous is not None:
            previous.tail = saved
        else:
            parent.text = saved
        parent.insert(index, element)
        element.tail = tail


def _remove_keeping_tail(element: etree._Element) -> None:
    parent, previous, tail = element.getparent(), element.getprevious(), element.tail
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _c14n(node) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=False, with_comments=False)


def document_digest(root: etree._Element, digest_method: str, signature: etree._Element | None = None) -> bytes:
    """The digest of the whole document without ``signature`` (C14N 1.0)."""
    name = DIGEST_METHODS[digest_method]
    if signature is None:
        return hashlib.new(name, _c14n(root.getroottree())).digest()
    with _detached(signature):
        return hashlib.new(name, _c14n(root.getroottree())).digest()


def canonical_signed_info(signed_info: etree._Element) -> bytes:
    """SignedInfo in C14N 1.0, in its place in the document (inherited namespaces included)."""
    return _c14n(signed_info)


def embedded_certificate(info: SignatureInfo) -> Certificate:
    if info.certificate_der is None:
        raise SignatureError(MALFORMED, "ds:KeyInfo carries no ds:X509Certificate")
    return Certificate.load(info.certificate_der)


def verify_signature(info: SignatureInfo, root: etree._Element, certificate: Certificate) -> Verified:
    """Check ``info`` (read from ``root``) with ``certificate``: SignatureError if it fails."""
    verify(certificate, canonical_signed_info(info.signed_info), info.value, info.method)
    if document_digest(root, info.digest_method, info.element) != info.digest:
        raise SignatureError(DIGEST_MISMATCH, f"the message's content does not match its "
                                              f"{info.digest_method.rsplit('#', 1)[-1]} DigestValue "
                                              f"(changed after signing)")
    return Verified(certificate.number, info.method)


def verify_ceb(root: etree._Element, certificate: Certificate | None = None) -> Verified:
    """Verify the message's signature with ``certificate`` (default: the one it embeds — which
    proves integrity only, not who signed: the gateway passes the registered one)."""
    info = read_signature(root)
    return verify_signature(info, root, certificate or embedded_certificate(info))


def sign_root(root: etree._Element, key: PrivateKey, certificate: Certificate,
              algorithm: str | None = None) -> etree._Element:
    """Sign the document of ``root`` in place (any earlier ds:Signature of the root replaced)."""
    algorithm = algorithm or key.algorithm
    if algorithm not in DIGEST_FOR:
        raise SignatureError(WRONG_ALGORITHM, f"cannot sign with {algorithm!r}")
    for old in [child for child in root if child.tag == SIGNATURE_TAG]:
        _remove_keeping_tail(old)
    digest_method = DIGEST_FOR[algorithm]
    digest = document_digest(root, digest_method)
    signature = etree.SubElement(root, SIGNATURE_TAG, nsmap={"ds": DS_NAMESPACE})
    signed_info = etree.SubElement(signature, _DS + "SignedInfo")
    etree.SubElement(signed_info, _DS + "CanonicalizationMethod", Algorithm=C14N_10)
    etree.SubElement(signed_info, _DS + "SignatureMethod", Algorithm=algorithm)
    reference = etree.SubElement(signed_info, _DS + "Reference", URI="")
    transforms = etree.SubElement(reference, _DS + "Transforms")
    etree.SubElement(transforms, _DS + "Transform", Algorithm=ENVELOPED)
    etree.SubElement(reference, _DS + "DigestMethod", Algorithm=digest_method)
    etree.SubElement(reference, _DS + "DigestValue").text = base64.b64encode(digest).decode("ascii")
    value = etree.SubElement(signature, _DS + "SignatureValue")
    key_info = etree.SubElement(signature, _DS + "KeyInfo")
    etree.SubElement(key_info, _DS + "KeyName").text = certificate.number
    x509 = etree.SubElement(etree.SubElement(key_info, _DS + "X509Data"), _DS + "X509Certificate")
    x509.text = base64.b64encode(certificate.der).decode("ascii")
    value.text = base64.b64encode(sign(key, canonical_signed_info(signed_info), algorithm)).decode("ascii")
    return signature


def sign_ceb(xml: bytes, key: PrivateKey, certificate: Certificate, algorithm: str | None = None) -> bytes:
    """``xml`` (a CEB message) signed: UTF-8 with an XML declaration, signature last in the root."""
    root = safe_xml.load(xml, source="<sign>", max_bytes=max(len(xml), 1))
    sign_root(root, key, certificate, algorithm)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
