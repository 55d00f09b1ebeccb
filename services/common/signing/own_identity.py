"""sandan's own signing identity: the key and certificate its receipt envelopes are signed with.

``SANDAN_SIGNING_KEY`` / ``SANDAN_SIGNING_CERT`` (PEM files) name them; with neither set, an SM2
key and a self-signed certificate are generated once into ``$SANDAN_LOCAL_DIR/signing/`` and
reused by every later process on that folder (the gateway, ``sandan certs show-own``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.common import config
from services.common.signing.crypto import Certificate, PrivateKey, SignatureError, make_certificate, sign, verify

KEY_FILE, CERT_FILE = "sandan-key.pem", "sandan-cert.pem"
_PROBE = b"sandan signing identity check"


class IdentityError(Exception):
    """The configured identity cannot be used: one line naming the setting and why."""


@dataclass(frozen=True)
class OwnIdentity:
    key: PrivateKey
    certificate: Certificate
    source: str  # where it came from, for a start-up log line


def generated_dir() -> Path:
    return Path(config.get("SANDAN_LOCAL_DIR")) / "signing"


def load() -> OwnIdentity:
    """The configured identity, or the generated one (made on first use)."""
    key_path, cert_path = config.get("SANDAN_SIGNING_KEY"), config.get("SANDAN_SIGNING_CERT")
    if bool(key_path) != bool(cert_path):
        given, missing = (("SANDAN_SIGNING_KEY", "SANDAN_SIGNING_CERT") if key_path
                          else ("SANDAN_SIGNING_CERT", "SANDAN_SIGNING_KEY"))
        raise IdentityError(f"setting {missing}: empty, but {given} is set (give both, or neither for a generated "
                            f"identity)")
    if key_path:
        return _from_files(Path(key_path), Path(cert_path), "SANDAN_SIGNING_KEY", "SANDAN_SIGNING_CERT")
    folder = generated_dir()
    if not (folder / KEY_FILE).exists():
        _generate(folder)
    return _from_files(folder / KEY_FILE, folder / CERT_FILE, str(folder / KEY_FILE), str(folder / CERT_FILE))


def _from_files(key_path: Path, cert_path: Path, key_name: str, cert_name: str) -> OwnIdentity:
    try:
        key = PrivateKey.load(key_path.read_bytes())
    except OSError as exc:
        raise IdentityError(f"setting {key_name}: cannot read {key_path}: {exc.strerror or exc}") from None
    except SignatureError as exc:
        raise IdentityError(f"setting {key_name}: {key_path}: {exc.message}") from None
    try:
        certificate = Certificate.load(cert_path.read_bytes())
    except OSError as exc:
        raise IdentityError(f"setting {cert_name}: cannot read {cert_path}: {exc.strerror or exc}") from None
    except SignatureError as exc:
        raise IdentityError(f"setting {cert_name}: {cert_path}: {exc.message}") from None
    try:  # a certificate of another key would make every envelope fail its recipients' check
        verify(certificate, _PROBE, sign(key, _PROBE), key.algorithm)
    except SignatureError:
        raise IdentityError(f"setting {key_name}: {key_path} is not the key of {cert_path}") from None
    return OwnIdentity(key, certificate, str(cert_path))


def _generate(folder: Path) -> None:
    """Key and certificate written into a temporary folder renamed into place: two processes
    starting at once end with one identity (the loser's rename fails and it uses the winner's)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".signing-"))
    try:
        key = PrivateKey.generate("sm2")
        certificate = make_certificate(key, "sandan")
        (temp / KEY_FILE).write_bytes(key.pem())
        os.chmod(temp / KEY_FILE, 0o600)
        (temp / CERT_FILE).write_bytes(certificate.pem)
        try:
            os.rename(temp, folder)
        except OSError:
            if not (folder / KEY_FILE).exists():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
