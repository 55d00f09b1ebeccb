"""The demo's signatures: every party signs what it submits, one tampered message is refused, and
the enterprises check sandan's signed receipts with the certificate sandan publishes.

- each enterprise gets a test SM2 identity (``services.tools.signing_parties``, kept under
  ``$SANDAN_LOCAL_DIR/demo/signing-parties`` and reused), registered for its code before the
  gateway starts, as an operator would with `sandan certs add`;
- a CEB621 signed by its agent and then changed in one character is submitted: the gateway
  refuses it whole, ``DIGEST_MISMATCH`` (the deliberate negative, nothing of it is published);
- `sandan certs show-own` gives sandan's certificate; every receipt envelope the desk kept is
  verified with it, and one with `sandan ceb verify FILE --cert PEM` as a connector would.
"""
from __future__ import annotations

import copy
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from services.common import config
from services.common.ceb.writer import write_message
from services.common.signing.crypto import FIELD_OF, Certificate
from services.demo import parties as parties_mod
from services.gateway.client import GatewayClient, xml_item
from services.tools.signing_parties import SigningParties

SIGNATURE_REASONS = tuple(FIELD_OF)  # the codes a refusal for a signature starts with


@dataclass
class SignatureReport:
    signed: int = 0
    registered: int = 0
    refusals: list[str] = field(default_factory=list)  # refusals for a signature reason (must stay empty)
    tampered: str = ""                                # returnInfo of the tampered CEB621's refusal
    envelopes: int = 0
    envelopes_verified: int = 0
    envelopes_valid: int | None = None                # against the DxpMsg XSD, when CEB_XSD_DIR is set
    failures: list[str] = field(default_factory=list)
    verify_line: str = ""                             # `sandan ceb verify` of one receipt envelope
    required: str = "default"                         # the gateway's SANDAN_REQUIRE_SIGNATURE

    @property
    def as_expected(self) -> bool:
        return (not self.refusals and self.tampered.startswith("DIGEST_MISMATCH") and self.signed > 0
                and self.envelopes > 0 and self.envelopes_verified == self.envelopes
                and self.envelopes_valid in (None, self.envelopes) and " OK certificate " in self.verify_line)

    def to_json(self) -> dict:
        return {"messages_signed": self.signed, "certificates_registered": self.registered,
                "signature_refusals": len(self.refusals), "tampered_621": self.tampered.split(" ", 1)[0],
                "receipt_envelopes": self.envelopes, "receipt_envelopes_verified": self.envelopes_verified,
                "receipt_envelopes_valid": self.envelopes_valid}

    def lines(self) -> list[str]:
        lines = [f"signatures (every party signs; the gateway runs with SANDAN_REQUIRE_SIGNATURE={self.required})",
                 f"  {'messages signed':34} {self.signed:6}",
                 f"  {'certificates registered':34} {self.registered:6}",
                 f"  {'refused for a signature reason':34} {len(self.refusals):6}",
                 f"  tampered CEB621 (one character changed after signing): {self.tampered or 'NOT refused'}",
                 f"  {'receipt envelopes (dxp:DxpMsg)':34} {self.envelopes:6}   (verified with sandan's certificate:"
                 f" {self.envelopes_verified}" + ("" if self.envelopes_valid is None else
                                                   f"; valid against the DxpMsg XSD: {self.envelopes_valid}") + ")",
                 f"  {self.verify_line}"]
        lines += [f"  refused: {r}" for r in self.refusals[:5]] + [f"  not verified: {f}" for f in self.failures]
        return lines


def parties_folder() -> Path:
    return Path(config.get("SANDAN_LOCAL_DIR")) / "demo" / "signing-parties"


def register_parties(signers: SigningParties, report: SignatureReport) -> None:
    report.registered = signers.register(parties_mod.party_codes(), by="demo")


def signature_refusals(answers) -> list[str]:
    return [r.return_info for _, a in answers for r in a.refused if r.return_info.startswith(SIGNATURE_REASONS)]


def tampered_inventory(signers: SigningParties, inventory: dict) -> bytes:
    """A CEB621 of its own (fresh guids) signed by its agent, then one character of its signed
    content changed, as a man in the middle would."""
    doc = copy.deepcopy(inventory)
    doc["guid"] = str(uuid.uuid4()).upper()
    doc["copNo"] = "TAMPER" + doc["guid"][:8]
    signed = signers.sign(write_message("CEB621", [doc]))
    marker = f"<ceb:copNo>{doc['copNo']}".encode()
    if marker not in signed:
        raise RuntimeError("the signed CEB621 does not carry its copNo as written")
    return signed.replace(marker, marker[:-1] + b"X", 1)


async def refuse_tampered(credentials, signers: SigningParties, inventory: dict, report: SignatureReport) -> None:
    async with GatewayClient(credentials) as gw:
        answers = [a async for a in gw.submit(iter([xml_item(tampered_inventory(signers, inventory), "tampered")]))]
    refused = [r.return_info for a in answers for r in a.refused]
    report.tampered = refused[0] if refused and not answers[0].accepted else ""


def verify_receipts(desk, env: dict, run_dir: Path, report: SignatureReport) -> None:
    """sandan's certificate as an enterprise gets it (`sandan certs show-own`), every kept receipt
    envelope verified with it, and one through `sandan ceb verify`."""
    report.required = env.get("SANDAN_REQUIRE_SIGNATURE") or "default"
    pem = run_dir / "sandan-certificate.pem"
    pem.write_text(parties_mod.sandan("certs", "show-own", env=env))
    verified, report.failures = desk.verify(Certificate.load(pem.read_bytes()))
    report.envelopes, report.envelopes_verified = len(desk.envelopes), verified
    if desk.xsd_dir is not None:
        report.envelopes_valid = len(desk.envelopes_valid)
    if desk.envelopes:
        one = sorted(desk.envelopes)[0]
        done = subprocess.run([sys.executable, "-m", "services.cli", "ceb", "verify", str(one), "--cert", str(pem)],
                              env=env, capture_output=True, text=True, cwd=config.PROJECT_ROOT, timeout=60)
        report.verify_line = (done.stdout.strip() or done.stderr.strip()).replace(str(one.parent) + "/", "")
