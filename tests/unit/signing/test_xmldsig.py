"""Enveloped XML-DSig of CEB messages: round trips, tampering, placement, outside signers."""
from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from services.common.ceb import xsd
from services.common.signing import crypto, xmldsig
from services.common.signing.crypto import (
    RSA_SHA1, RSA_SHA256, SHA256, SM2_SM3, SM3, Certificate, PrivateKey, SignatureError, test_identity,
)

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "data" / "ceb"
XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or REPO.parent / "shared" / "ceb" / "xsd")
ORDER = (DATA / "CEB311_order.xml").read_bytes()
INVENTORY = (DATA / "CEB621_inventory.xml").read_bytes()


def identity(algorithm="sm2", name="3301963K27"):
    key_pem, cert_pem = test_identity(name, algorithm)
    return PrivateKey.load(key_pem), Certificate.load(cert_pem)


SM2 = identity("sm2")
RSA = identity("rsa")


def root_of(data: bytes) -> etree._Element:
    return etree.fromstring(data)


@pytest.mark.parametrize("who", [SM2, RSA], ids=["sm2-sm3", "rsa-sha256"])
@pytest.mark.parametrize("message", [ORDER, INVENTORY], ids=["CEB311", "CEB621"])
def test_round_trip(who, message):
    key, cert = who
    signed = xmldsig.sign_ceb(message, key, cert)
    verified = xmldsig.verify_ceb(root_of(signed), cert)
    assert verified == xmldsig.Verified(cert.number, key.algorithm)
    assert xmldsig.verify_ceb(root_of(signed)) == verified  # with the embedded certificate


def test_layout_is_the_standards_and_valid_against_the_xsd():
    key, cert = SM2
    root = root_of(xmldsig.sign_ceb(INVENTORY, key, cert))
    signature = root[-1]
    assert signature.tag == xmldsig.SIGNATURE_TAG and len(root.findall(xmldsig.SIGNATURE_TAG)) == 1
    ds = {"ds": xmldsig.DS_NAMESPACE}
    assert signature.find("ds:SignedInfo/ds:SignatureMethod", ds).get("Algorithm") == SM2_SM3
    assert signature.find("ds:SignedInfo/ds:Reference/ds:DigestMethod", ds).get("Algorithm") == SM3
    assert signature.find("ds:SignedInfo/ds:Reference", ds).get("URI") == ""
    assert signature.findtext("ds:KeyInfo/ds:KeyName", namespaces=ds) == cert.number
    assert base64.b64decode(signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=ds)) == cert.der
    assert xsd.problems(xsd.schema_for(XSD_DIR), root) == []


def tamper_each_text(signed: bytes):
    """Every text and attribute value of the signed content, one changed character at a time."""
    root = root_of(signed)
    targets = [el for el in root.iter() if not isinstance(el, etree._Comment)
               and xmldsig.SIGNATURE_TAG not in [a.tag for a in el.iterancestors()] + [el.tag]]
    for index, element in enumerate(targets):
        if element.text and element.text.strip():
            copy = root_of(signed)
            target = [e for e in copy.iter() if not isinstance(e, etree._Comment)][
                list(root.iter()).index(element)]
            target.text = target.text[:-1] + ("X" if target.text[-1] != "X" else "Y")
            yield f"text of {etree.QName(element).localname}", copy
        for name in element.attrib:
            copy = root_of(signed)
            target = [e for e in copy.iter()][list(root.iter()).index(element)]
            target.set(name, target.get(name) + "0")
            yield f"@{name}", copy


@pytest.mark.parametrize("who", [SM2, RSA], ids=["sm2-sm3", "rsa-sha256"])
def test_any_changed_character_of_the_content_is_a_digest_mismatch(who):
    key, cert = who
    signed = xmldsig.sign_ceb(ORDER, key, cert)
    count = 0
    for what, root in tamper_each_text(signed):
        with pytest.raises(SignatureError) as err:
            xmldsig.verify_ceb(root, cert)
        assert err.value.reason == crypto.DIGEST_MISMATCH, what
        count += 1
    assert count > 30
    # white space between elements is signed content too
    spaced = signed.replace(b"<ceb:OrderList>", b"<ceb:OrderList> ", 1)
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root_of(spaced), cert)
    assert err.value.reason == crypto.DIGEST_MISMATCH


def test_changed_signature_value_or_digest_value_is_a_signature_mismatch():
    key, cert = SM2
    root = root_of(xmldsig.sign_ceb(ORDER, key, cert))
    ds = {"ds": xmldsig.DS_NAMESPACE}
    value = root.find(".//ds:SignatureValue", ds)
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root, cert)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH
    root = root_of(xmldsig.sign_ceb(ORDER, key, cert))
    digest = root.find(".//ds:DigestValue", ds)
    digest.text = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root, cert)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH


def test_another_enterprises_key_does_not_verify_with_the_registered_certificate():
    other_key, other_cert = identity("sm2", "OTHER")
    _, registered = SM2
    root = root_of(xmldsig.sign_ceb(ORDER, other_key, other_cert))
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root, registered)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH


def test_unsigned_wrong_algorithm_and_malformed():
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root_of(ORDER), SM2[1])
    assert err.value.reason == crypto.NOT_SIGNED
    key, cert = SM2
    signed = xmldsig.sign_ceb(ORDER, key, cert)
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root_of(signed.replace(SM2_SM3.encode(), b"http://example.com/#dsa-md5")), cert)
    assert err.value.reason == crypto.WRONG_ALGORITHM and "dsa-md5" in err.value.message
    with pytest.raises(SignatureError) as err:  # an SM2 signature claimed as RSA
        xmldsig.verify_ceb(root_of(signed.replace(SM2_SM3.encode(), RSA_SHA256.encode())), cert)
    assert err.value.reason == crypto.WRONG_ALGORITHM
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root_of(signed.replace(b"<ds:SignatureValue>", b"<ds:SignatureValue>!!", 1)), cert)
    assert err.value.reason == crypto.MALFORMED and "SignatureValue" in err.value.message
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(root_of(signed.replace(b'URI=""', b'URI="#x"')), cert)
    assert err.value.reason == crypto.MALFORMED


def test_signing_again_replaces_the_placeholder_signature():
    key, cert = RSA
    once = xmldsig.sign_ceb(INVENTORY, key, cert)
    twice = xmldsig.sign_ceb(once, key, cert)
    assert len(root_of(twice).findall(xmldsig.SIGNATURE_TAG)) == 1
    xmldsig.verify_ceb(root_of(twice), cert)


def test_rsa_sha1_for_older_keys():
    key, cert = RSA
    signed = xmldsig.sign_ceb(ORDER, key, cert, RSA_SHA1)
    assert xmldsig.verify_ceb(root_of(signed), cert).algorithm == RSA_SHA1


def outside_signature(tmp_path, message: bytes, key_pem: bytes, cert: Certificate, method: str,
                      digest_method: str, dgst: list[str]) -> bytes:
    """An XML-DSig assembled by the test around digests and a signature made by the openssl CLI."""
    key = tmp_path / "key.pem"
    key.write_bytes(key_pem)
    root = etree.fromstring(message)
    for old in root.findall(xmldsig.SIGNATURE_TAG):  # the sample's placeholder
        root.remove(old)
    content = tmp_path / "content"
    content.write_bytes(etree.tostring(root.getroottree(), method="c14n", with_comments=False))
    digest = subprocess.run(["openssl", "dgst", f"-{dgst[0]}", "-binary", str(content)],
                            check=True, capture_output=True).stdout
    template = f"""<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ds:SignedInfo>
    <ds:CanonicalizationMethod Algorithm="{xmldsig.C14N_10}"/>
    <ds:SignatureMethod Algorithm="{method}"/>
    <ds:Reference URI="">
      <ds:Transforms><ds:Transform Algorithm="{xmldsig.ENVELOPED}"/></ds:Transforms>
      <ds:DigestMethod Algorithm="{digest_method}"/>
      <ds:DigestValue>{base64.b64encode(digest).decode()}</ds:DigestValue>
    </ds:Reference>
  </ds:SignedInfo>
  <ds:SignatureValue/>
  <ds:KeyInfo><ds:KeyName>{cert.number}</ds:KeyName><ds:X509Data><ds:X509Certificate>
{base64.encodebytes(cert.der).decode()}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
</ds:Signature>"""
    signature = etree.fromstring(template)
    root.append(signature)
    signed_info = tmp_path / "signed_info"
    signed_info.write_bytes(etree.tostring(signature[0], method="c14n"))
    value = subprocess.run(["openssl", "dgst", f"-{dgst[0]}", "-sign", str(key), *dgst[1:], str(signed_info)],
                           check=True, capture_output=True).stdout
    signature[1].text = base64.encodebytes(value).decode()
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def test_rsa_xmldsig_made_with_the_openssl_command_line_verifies(tmp_path):
    key_pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                             check=True, capture_output=True).stdout
    cert = crypto.make_certificate(PrivateKey.load(key_pem), "3301963K27")
    signed = outside_signature(tmp_path, ORDER, key_pem, cert, RSA_SHA256, SHA256, ["sha256"])
    assert xmldsig.verify_ceb(etree.fromstring(signed), cert) == xmldsig.Verified(cert.number, RSA_SHA256)
    tampered = signed.replace(b"<ceb:goodsValue>300.00", b"<ceb:goodsValue>300.01")
    with pytest.raises(SignatureError) as err:
        xmldsig.verify_ceb(etree.fromstring(tampered), cert)
    assert err.value.reason == crypto.DIGEST_MISMATCH


def test_sm2_xmldsig_made_with_the_openssl_command_line_verifies(tmp_path):
    key_pem = subprocess.run(["openssl", "genpkey", "-algorithm", "SM2"], check=True, capture_output=True).stdout
    cert = crypto.make_certificate(PrivateKey.load(key_pem), "3301963K27")
    signed = outside_signature(tmp_path, INVENTORY, key_pem, cert, SM2_SM3, SM3,
                               ["sm3", "-sigopt", "distid:1234567812345678"])
    assert xmldsig.verify_ceb(etree.fromstring(signed), cert) == xmldsig.Verified(cert.number, SM2_SM3)


def test_normalise_number():
    assert xmldsig.normalise_number(" 013b5b11 ") == "13B5B11"
    assert xmldsig.normalise_number("0x00AB:CD") == "ABCD"
