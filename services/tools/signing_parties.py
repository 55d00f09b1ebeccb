"""Signing identities for the parties sandan plays (the demo, the fault suite's pipeline, tests):
one test key and self-signed certificate per enterprise code, registered in the certificate
registry as an operator would (`sandan certs add`'s path), and every CEB message signed with its
sender's key before it goes through the gateway.

Keys live in a folder of the run's local directory (``<code>.pem``: the key, then its
certificate), made on first use and reused by later runs.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lxml import etree

from services.common.ceb import safe_xml
from services.common.documents import NAMESPACE
from services.common.senders import SENDER_FIELDS
from services.common.signing.crypto import Certificate, PrivateKey, make_certificate
from services.common.signing.xmldsig import sign_root

_CEB = f"{{{NAMESPACE}}}"


class SigningParties:
    def __init__(self, folder: Path, algorithm: str = "sm2") -> None:
        self.folder, self.algorithm = Path(folder), algorithm
        self._identities: dict[str, tuple[PrivateKey, Certificate]] = {}
        self.signed = 0       # messages signed
        self.registered = 0   # certificates registered by ``register``

    def identity(self, code: str) -> tuple[PrivateKey, Certificate]:
        """``code``'s key and certificate, from the folder or made now (and kept there)."""
        known = self._identities.get(code)
        if known is None:
            path = self.folder / f"{code}.pem"
            if not path.exists():
                key = PrivateKey.generate(self.algorithm)
                # key and certificate in one file, replaced whole: never a key beside another's certificate
                _write(path, key.pem() + make_certificate(key, f"sandan test party {code}").pem)
            pem = path.read_bytes()
            known = self._identities[code] = (PrivateKey.load(pem), Certificate.load(pem))
        return known

    def certificate(self, code: str) -> Certificate:
        return self.identity(code)[1]

    def register(self, codes, *, by: str = "sandan-test-parties", timeout: float = 30.0) -> int:
        """Each code's certificate bound to it in the registry (current ``SANDAN_TOPIC_PREFIX``);
        RuntimeError naming the refusals if the registry refuses any."""
        from services.cli.certs import register
        codes = sorted(set(codes))
        problems = register([(self.certificate(code), code) for code in codes], by=by, timeout=timeout)
        if problems:
            raise RuntimeError(f"the certificate registry refused: {'; '.join(problems)}")
        self.registered += len(codes)
        return len(codes)

    def sender(self, root: etree._Element) -> str:
        """The code that sends the message: the first document's first sender field (an
        inventory's agentCode, an order's ebpCode …), as the gateway names its submitter."""
        code = etree.QName(root).localname[:6]
        for field in SENDER_FIELDS.get(code, ()):
            for element in root.iter(_CEB + field):
                if (element.text or "").strip():
                    return element.text.strip()
        raise ValueError(f"{code} message names no sender ({', '.join(SENDER_FIELDS.get(code, ())) or 'not an input'})")

    def sign(self, xml: bytes, code: str | None = None) -> bytes:
        """``xml`` signed by ``code`` (default: its sender), any earlier signature replaced."""
        root = safe_xml.load(xml, source="<sign>", max_bytes=max(len(xml), 1))
        key, certificate = self.identity(code or self.sender(root))
        sign_root(root, key, certificate)
        self.signed += 1
        return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")

    def sign_file(self, path: Path) -> Path:
        path.write_bytes(self.sign(path.read_bytes()))
        return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temp, 0o600)
    os.replace(temp, path)
