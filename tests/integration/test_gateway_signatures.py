"""Signatures through the real gateway on the local stack: certificates registered with
`sandan certs add`, followed by the gateway from the certificates topic; a signed CEB621 is
accepted, unsigned / another enterprise's / revoked ones are refused with the reason; and
`sandan certs list|revoke` and `sandan ceb verify` on the command line."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from services.common import kafka_io, topics
from services.common.signing.crypto import Certificate, PrivateKey, test_identity
from services.common.signing.xmldsig import sign_ceb
from services.gateway.certificates import CertificateFollower
from services.gateway.client import xml_item
from services.gateway.proto import gateway_pb2 as pb
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import kafka_gateway, register, settings

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "ceb"
INVENTORY = (DATA / "CEB621_inventory.xml").read_bytes()
AGENT, OTHER = "3301961234", "3301969999"
VALID = {"not_before": datetime(2025, 1, 1, tzinfo=timezone.utc), "not_after": datetime(2035, 1, 1, tzinfo=timezone.utc)}


def sandan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=120)


def identity(tmp_path: Path, name: str) -> tuple[PrivateKey, Certificate, Path]:
    key_pem, cert_pem = test_identity(name, **VALID)
    path = tmp_path / f"{name}.pem"
    path.write_bytes(cert_pem)
    return PrivateKey.load(key_pem), Certificate.load(cert_pem), path


def with_guid(xml: bytes, n: int) -> bytes:
    """The sample with its own document guid, so each submission is a new document."""
    return xml.replace(b"06210001-0000-4000-8000-000000000000", f"06210001-0000-4000-8000-{n:012d}".encode())


def test_the_gateway_verifies_against_the_registry(gateway_topics, tmp_path):
    agent_key, agent_cert, agent_file = identity(tmp_path, AGENT)
    other_key, other_cert, other_file = identity(tmp_path, OTHER)
    for code, path in ((AGENT, agent_file), (OTHER, other_file)):
        done = sandan("certs", "add", "--enterprise", code, str(path))
        assert done.returncode == 0, done.stderr
        assert f"registered certificate {Certificate.load(path.read_bytes()).number}" in done.stdout
    listed = [json.loads(line) for line in sandan("certs", "list", "--enterprise", AGENT).stdout.splitlines()]
    assert [(e["number"], e["enterprise"], e["revokedAt"]) for e in listed] == [(agent_cert.number, AGENT, None)]
    assert sandan("certs", "add", "--enterprise", OTHER, str(agent_file)).returncode == 1  # one owner per number

    tokens = register(tmp_path / "clients.json", ("agent", "enterprise", [AGENT]))
    unsigned = INVENTORY[:INVENTORY.index(b"<ds:Signature")] + INVENTORY[INVENTORY.index(b"</ds:Signature>") + 15:]
    signed = sign_ceb(with_guid(INVENTORY, 1), agent_key, agent_cert)
    foreign = sign_ceb(with_guid(INVENTORY, 2), other_key, other_cert)
    tampered = sign_ceb(with_guid(INVENTORY, 3), agent_key, agent_cert).replace(b"<ceb:qty>", b"<ceb:qty>1", 1)

    async def run(*payloads: bytes) -> list[pb.SubmitAnswer]:
        async with kafka_gateway(settings(tmp_path, require_signature="default")) as gw:
            policy = gw.gateway.signatures
            policy.ready.clear()
            stop = asyncio.Event()
            follower = asyncio.create_task(CertificateFollower(kafka_io.bootstrap(), policy.book, policy.ready).run(stop))
            try:
                client = gw.client(tokens["agent"])
                return [answer async for answer in client.submit(iter([xml_item(p, str(n))
                                                                        for n, p in enumerate(payloads)]))]
            finally:
                stop.set()
                await follower

    answers = asyncio.run(run(signed, unsigned, foreign, tampered))
    assert answers[0].outcome == pb.OUTCOME_ACCEPTED and not answers[0].refused
    infos = [a.refused[0].return_info for a in answers[1:]]
    assert all(a.outcome == pb.OUTCOME_REFUSED for a in answers[1:])
    assert infos[0].startswith("NOT_SIGNED ds:Signature: CEB621 must carry a ds:Signature")
    assert infos[1] == (f"WRONG_ENTERPRISE ds:KeyInfo/ds:KeyName: certificate {other_cert.number} is registered for "
                        f"another enterprise, not for {AGENT}")
    assert infos[2].startswith("DIGEST_MISMATCH ds:SignedInfo/ds:Reference/ds:DigestValue")

    revoked = sandan("certs", "revoke", agent_cert.number.lower())
    assert revoked.returncode == 0 and f"revoked certificate {agent_cert.number} of {AGENT}" in revoked.stdout
    assert sandan("certs", "revoke", agent_cert.number).returncode == 1  # already revoked
    again = asyncio.run(run(sign_ceb(with_guid(INVENTORY, 4), agent_key, agent_cert)))
    assert again[0].outcome == pb.OUTCOME_REFUSED
    assert again[0].refused[0].return_info.startswith(f"CERTIFICATE_REVOKED ds:KeyInfo/ds:KeyName: certificate "
                                                      f"{agent_cert.number} was revoked on ")
    published = kafka_io.read_all(topics.name("documents.inventory"))
    assert len(published) == 2  # the two inventories of the signed message, nothing of the others


def test_sandan_ceb_verify(tmp_path):
    key_pem, cert_pem = test_identity(AGENT, "rsa", **VALID)
    key, cert = PrivateKey.load(key_pem), Certificate.load(cert_pem)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    good = tmp_path / "signed.xml"
    good.write_bytes(sign_ceb(INVENTORY, key, cert))
    done = sandan("ceb", "verify", str(good), "--cert", str(tmp_path / "cert.pem"))
    assert (done.returncode, done.stdout.strip()) == (0, f"{good}: OK certificate {cert.number} rsa-sha256")
    bad = tmp_path / "tampered.xml"
    bad.write_bytes(good.read_bytes().replace(b"<ceb:qty>", b"<ceb:qty>1", 1))
    done = sandan("ceb", "verify", str(bad))
    assert done.returncode == 1 and done.stdout.startswith(f"{bad}: DIGEST_MISMATCH ")
    done = sandan("ceb", "verify", str(DATA / "CEB311_order.xml"))
    assert done.returncode == 1 and "NOT_SIGNED ds:Signature: CEB311Message carries no ds:Signature" in done.stdout
    done = sandan("ceb", "verify", str(tmp_path / "missing.xml"))
    assert done.returncode == 2 and "sandan ceb verify" in done.stderr
