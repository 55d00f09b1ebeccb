"""Receipts signed in their transport envelope (dxp:DxpMsg): valid against the official DxpMsg
XSD, verified with sandan's certificate, and any changed byte (Data included) refused."""
from __future__ import annotations

import base64
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from lxml import etree

from services.common.ceb import xsd
from services.common.ceb.receipt_xml import receipt_messages
from services.common.clock import CHINA
from services.common.receipts import receipt
from services.common.signing import dxp
from services.common.signing.crypto import (
    DIGEST_MISMATCH, MALFORMED, SIGNATURE_MISMATCH, Certificate, PrivateKey, SignatureError, make_certificate,
)
from services.common.signing.xmldsig import sign_root
from services.tools.generator import generate

REPO = Path(__file__).resolve().parents[3]
XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or REPO.parent / "shared" / "ceb" / "xsd")
SETS = generate(3, fault_share=0, seed=11)
RECEIVER = SETS[0].order["ebpCode"]  # an 18-character credit code
CREATED = datetime(2026, 3, 1, 9, 30, tzinfo=CHINA)


def identity(algorithm: str = "sm2") -> tuple[PrivateKey, Certificate]:
    key = PrivateKey.generate(algorithm)
    return key, make_certificate(key, "sandan")


SANDAN = identity()


def receipt_message() -> bytes:
    receipts = [dict(receipt(s.order, "120", "verified", [], 1772328600000), receiver=RECEIVER) for s in SETS]
    [message] = receipt_messages(receipts)
    return message.xml


MESSAGE = receipt_message()


def envelope(message: bytes = MESSAGE, who=SANDAN) -> bytes:
    key, certificate = who
    return dxp.wrap(message, sender_id="DXPSANDAN0000001", receiver=RECEIVER, created=CREATED, key=key,
                    certificate=certificate)


def test_an_envelope_validates_against_the_official_dxpmsg_xsd():
    schema = xsd.schema_for(XSD_DIR, xsd.DXP_SCHEMA_FILE)
    for who in (SANDAN, identity("rsa")):
        root = etree.fromstring(envelope(who=who))
        assert xsd.problems(schema, root) == []
        assert root.tag == "{http://www.chinaport.gov.cn/dxp}DxpMsg" and root[-1].tag.endswith("}Signature")


def test_a_signed_envelope_verifies_and_names_the_message_it_carries():
    verified, env = dxp.verify(etree.fromstring(envelope()), SANDAN[1])
    assert verified.number == SANDAN[1].number
    assert env.data == MESSAGE
    assert env.msg_type == "CEB312" and env.msg_id == etree.fromstring(MESSAGE).get("guid")
    assert env.sender == "DXPSANDAN0000001" and env.created == "2026-03-01T09:30:00+08:00"
    # the XSD allows 16 characters: the credit code's organisation code, and the whole code in BizKey
    assert env.receivers == (RECEIVER[8:17],) and env.receiver_code == RECEIVER


def test_a_changed_byte_in_its_data_fails_digest_mismatch():
    signed = envelope()
    start = signed.index(b"<dxp:Data>") + len(b"<dxp:Data>") + 40
    flipped = b"A" if signed[start:start + 1] != b"A" else b"B"
    tampered = signed[:start] + flipped + signed[start + 1:]
    with pytest.raises(SignatureError) as caught:
        dxp.verify(etree.fromstring(tampered), SANDAN[1])
    assert caught.value.reason == DIGEST_MISMATCH
    assert caught.value.field == "ds:SignedInfo/ds:Reference/ds:DigestValue"


def test_a_changed_receiver_fails_digest_mismatch():
    tampered = envelope().replace(f">{RECEIVER}<".encode(), b">91110000MA00XQ5R7E<")
    with pytest.raises(SignatureError) as caught:
        dxp.verify(etree.fromstring(tampered), SANDAN[1])
    assert caught.value.reason == DIGEST_MISMATCH


def test_another_certificate_does_not_verify_it():
    with pytest.raises(SignatureError) as caught:
        dxp.verify(etree.fromstring(envelope()), identity()[1])
    assert caught.value.reason == SIGNATURE_MISMATCH


def test_an_envelope_whose_transinfo_names_another_message_than_its_data_is_refused():
    root = etree.fromstring(envelope())
    root.find("{http://www.chinaport.gov.cn/dxp}TransInfo/{http://www.chinaport.gov.cn/dxp}MsgType").text = "CEB412"
    sign_root(root, *SANDAN)  # signed as it stands: the signature is good, what it says is not
    with pytest.raises(SignatureError) as caught:
        dxp.verify(root, SANDAN[1])
    assert caught.value.reason == MALFORMED and "CEB412" in caught.value.message


def test_data_that_is_no_ceb_message_is_refused_with_a_reason():
    root = etree.fromstring(envelope())
    root.find("{http://www.chinaport.gov.cn/dxp}Data").text = base64.b64encode(b"<nothing/>").decode()
    sign_root(root, *SANDAN)
    with pytest.raises(SignatureError) as caught:
        dxp.verify(root, SANDAN[1])
    assert caught.value.reason == MALFORMED and "dxp:Data" in caught.value.message


def test_a_ceb_message_is_not_an_envelope():
    with pytest.raises(SignatureError) as caught:
        dxp.verify(etree.fromstring(MESSAGE), SANDAN[1])
    assert caught.value.reason == MALFORMED and "DxpMsg" in caught.value.message


@pytest.mark.parametrize("code, expected", [("3301963K27", "3301963K27"), ("DXPSANDAN0000001", "DXPSANDAN0000001"),
                                            ("91330106MA27XK5W3B", "MA27XK5W3")])
def test_node_ids_fit_the_xsd(code, expected):
    assert dxp.node_id(code) == expected


@pytest.mark.parametrize("code", ["", "DXPSANDAN00000001X", "x" * 18])
def test_a_code_that_cannot_be_a_node_id_is_refused(code):
    with pytest.raises(ValueError):
        dxp.node_id(code)


def test_creation_time_keeps_its_offset():
    env = dxp.read(etree.fromstring(dxp.wrap(MESSAGE, sender_id="N1", receiver="3301963K27",
                                             created=datetime(2026, 3, 1, 1, 30, tzinfo=timezone.utc),
                                             key=SANDAN[0], certificate=SANDAN[1])))
    assert env.created == "2026-03-01T01:30:00+00:00" and env.receivers == ("3301963K27",)
