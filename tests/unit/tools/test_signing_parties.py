"""The parties' signing identities (services/tools/signing_parties.py): one per enterprise, made
once and reused, each message signed by its sender, certificates registered as `certs add` does."""
from __future__ import annotations

import pytest
from lxml import etree

from services.cli import certs
from services.common.ceb.writer import write_message
from services.common.signing.crypto import SIGNATURE_MISMATCH, SM2_SM3, SignatureError
from services.common.signing.xmldsig import verify_ceb
from services.tools.generator import generate
from services.tools.signing_parties import SigningParties

SETS = generate(2, fault_share=0, seed=4)


@pytest.mark.parametrize("code, doc, sender", [
    ("CEB621", SETS[0].inventory, "agentCode"), ("CEB311", SETS[0].order, "ebpCode"),
    ("CEB411", SETS[0].payment, "payCode"), ("CEB511", SETS[0].logistics, "logisticsCode")])
def test_each_message_is_signed_by_its_sender_and_verifies_with_that_senders_certificate(tmp_path, code, doc, sender):
    parties = SigningParties(tmp_path)
    root = etree.fromstring(parties.sign(write_message(code, [doc])))
    verified = verify_ceb(root, parties.certificate(doc[sender]))
    assert verified.algorithm == SM2_SM3 and parties.signed == 1
    with pytest.raises(SignatureError) as caught:
        verify_ceb(root, parties.certificate("3301963K27"))  # another enterprise's
    assert caught.value.reason == SIGNATURE_MISMATCH


def test_identities_are_made_once_and_reused_by_later_runs(tmp_path):
    first = SigningParties(tmp_path).certificate("3301963K27")
    again = SigningParties(tmp_path).certificate("3301963K27")
    assert again.der == first.der
    assert [p.name for p in tmp_path.iterdir()] == ["3301963K27.pem"]


def test_signing_replaces_the_writers_placeholder_signature(tmp_path):
    unsigned = write_message("CEB621", [SETS[1].inventory])  # carries the writer's empty placeholder
    signed = SigningParties(tmp_path).sign(unsigned)
    root = etree.fromstring(signed)
    assert len(root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature")) == 1
    assert verify_ceb(root).number  # the embedded certificate: integrity


def test_register_binds_each_code_to_its_certificate_and_says_what_the_registry_refused(tmp_path, monkeypatch):
    parties = SigningParties(tmp_path)
    calls = []
    monkeypatch.setattr(certs, "register", lambda pairs, **kw: calls.append((pairs, kw)) or [])
    assert parties.register(["B0000001", "A0000001", "B0000001"], by="demo") == 2
    [(pairs, kw)] = calls
    assert [(c.number, code) for c, code in pairs] == [(parties.certificate(code).number, code)
                                                         for code in ("A0000001", "B0000001")]
    assert kw["by"] == "demo" and parties.registered == 2
    monkeypatch.setattr(certs, "register", lambda pairs, **kw: ["certificate 1A is already registered for X"])
    with pytest.raises(RuntimeError, match="already registered for X"):
        parties.register(["C0000001"])


def test_a_message_that_names_no_sender_is_refused(tmp_path):
    with pytest.raises(ValueError, match="names no sender"):
        SigningParties(tmp_path).sender(etree.fromstring(b"<CEB999Message/>"))
