"""The command line around sandan's signed receipts: `sandan certs show-own` publishes sandan's
certificate, `sandan ceb verify` checks a receipt envelope with it and says what it carries, and
the gateway refuses to start with an identity or node id it could not sign with."""
from __future__ import annotations

from datetime import datetime

import pytest

from services.cli import main
from services.common.ceb.receipt_xml import receipt_messages
from services.common.clock import CHINA
from services.common.receipts import receipt
from services.common.signing import dxp, own_identity
from services.common.signing.crypto import Certificate, test_identity
from services.gateway.server import receipt_signer
from services.tools.generator import generate

SETS = generate(1, fault_share=0, seed=3)
RECEIVER = SETS[0].order["ebpCode"]


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    for name in ("SANDAN_SIGNING_KEY", "SANDAN_SIGNING_CERT", "SANDAN_DXP_NODE_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def signed_receipt(folder) -> tuple:
    [message] = receipt_messages([dict(receipt(SETS[0].order, "120", "verified", [], 1772328600000),
                                       receiver=RECEIVER)])
    identity = own_identity.load()
    path = folder / "CEB312_envelope.xml"
    path.write_bytes(dxp.wrap(message.xml, sender_id="DXPSANDAN0000001", receiver=RECEIVER,
                              created=datetime(2026, 3, 1, 9, 30, tzinfo=CHINA), key=identity.key,
                              certificate=identity.certificate))
    return path, message


def test_show_own_prints_sandans_certificate_and_verify_checks_an_envelope_with_it(local, capsys):
    assert main(["certs", "show-own"]) == 0
    out, err = capsys.readouterr()
    certificate = Certificate.load(out.encode())
    assert f"sandan's certificate {certificate.number} (sm2-sm3)" in err
    (local / "sandan.pem").write_text(out)
    path, message = signed_receipt(local)
    assert main(["ceb", "verify", str(path), "--cert", str(local / "sandan.pem")]) == 0
    line = capsys.readouterr().out.strip()
    guid = message.xml.split(b'guid="', 1)[1].split(b'"', 1)[0].decode()
    assert line == (f"{path}: OK certificate {certificate.number} sm2-sm3; envelope from DXPSANDAN0000001 to "
                    f"{RECEIVER} carries CEB312Message {guid}")


def test_verify_refuses_an_envelope_with_a_changed_byte_in_its_data(local, capsys):
    path, _ = signed_receipt(local)
    data = path.read_bytes()
    at = data.index(b"<dxp:Data>") + len(b"<dxp:Data>") + 10
    path.write_bytes(data[:at] + (b"Q" if data[at:at + 1] != b"Q" else b"R") + data[at + 1:])
    assert main(["ceb", "verify", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}: DIGEST_MISMATCH ds:SignedInfo/ds:Reference/ds:DigestValue: ")


def test_verify_with_another_certificate_says_signature_mismatch(local, capsys):
    path, _ = signed_receipt(local)
    (local / "other.pem").write_bytes(test_identity("other")[1])
    assert main(["ceb", "verify", str(path), "--cert", str(local / "other.pem")]) == 1
    assert capsys.readouterr().out.startswith(f"{path}: SIGNATURE_MISMATCH ds:SignatureValue: ")


def test_show_own_names_a_broken_setting(local, monkeypatch, capsys):
    monkeypatch.setenv("SANDAN_SIGNING_CERT", str(local / "missing.pem"))
    assert main(["certs", "show-own"]) == 1
    assert "setting SANDAN_SIGNING_KEY: empty" in capsys.readouterr().err


def test_the_gateway_does_not_start_with_a_node_id_the_envelope_xsd_refuses(local, monkeypatch):
    monkeypatch.setenv("SANDAN_DXP_NODE_ID", "DXP-NODE-ID-TOO-LONG")
    with pytest.raises(SystemExit, match="^setting SANDAN_DXP_NODE_ID: "):
        receipt_signer()


def test_the_gateway_does_not_start_with_a_signing_key_it_cannot_use(local, monkeypatch):
    (local / "k.pem").write_bytes(b"no key here")
    (local / "c.pem").write_bytes(test_identity("sandan")[1])
    monkeypatch.setenv("SANDAN_SIGNING_KEY", str(local / "k.pem"))
    monkeypatch.setenv("SANDAN_SIGNING_CERT", str(local / "c.pem"))
    with pytest.raises(SystemExit, match="^setting SANDAN_SIGNING_KEY: "):
        receipt_signer()
