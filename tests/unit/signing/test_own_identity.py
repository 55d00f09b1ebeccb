"""sandan's own signing identity: configured PEM files, or one generated once and reused."""
from __future__ import annotations

import stat

import pytest

from services.common.signing import own_identity
from services.common.signing.crypto import SM2_SM3, test_identity


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    monkeypatch.delenv("SANDAN_SIGNING_KEY", raising=False)
    monkeypatch.delenv("SANDAN_SIGNING_CERT", raising=False)
    return tmp_path


def test_without_settings_an_sm2_identity_is_generated_once_and_reused(local):
    first = own_identity.load()
    again = own_identity.load()
    assert first.certificate.algorithm == SM2_SM3
    assert again.certificate.number == first.certificate.number
    key_file = local / "signing" / own_identity.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert again.source == str(local / "signing" / own_identity.CERT_FILE)


def test_configured_files_are_used(local, monkeypatch):
    key_pem, cert_pem = test_identity("sandan", "rsa")
    (local / "k.pem").write_bytes(key_pem)
    (local / "c.pem").write_bytes(cert_pem)
    monkeypatch.setenv("SANDAN_SIGNING_KEY", str(local / "k.pem"))
    monkeypatch.setenv("SANDAN_SIGNING_CERT", str(local / "c.pem"))
    identity = own_identity.load()
    assert identity.certificate.pem == cert_pem and identity.source == str(local / "c.pem")
    assert not (local / "signing").exists()  # nothing generated


def test_a_certificate_of_another_key_is_refused_naming_the_setting(local, monkeypatch):
    key_pem, _ = test_identity("sandan")
    _, other_cert = test_identity("someone else")
    (local / "k.pem").write_bytes(key_pem)
    (local / "c.pem").write_bytes(other_cert)
    monkeypatch.setenv("SANDAN_SIGNING_KEY", str(local / "k.pem"))
    monkeypatch.setenv("SANDAN_SIGNING_CERT", str(local / "c.pem"))
    with pytest.raises(own_identity.IdentityError, match=r"^setting SANDAN_SIGNING_KEY: .* is not the key of"):
        own_identity.load()


def test_one_setting_without_the_other_is_refused(local, monkeypatch):
    monkeypatch.setenv("SANDAN_SIGNING_KEY", str(local / "k.pem"))
    with pytest.raises(own_identity.IdentityError, match="^setting SANDAN_SIGNING_CERT: empty"):
        own_identity.load()


def test_an_unreadable_key_file_is_refused_naming_the_setting(local, monkeypatch):
    (local / "k.pem").write_bytes(b"not a key")
    _, cert_pem = test_identity("sandan")
    (local / "c.pem").write_bytes(cert_pem)
    monkeypatch.setenv("SANDAN_SIGNING_KEY", str(local / "k.pem"))
    monkeypatch.setenv("SANDAN_SIGNING_CERT", str(local / "c.pem"))
    with pytest.raises(own_identity.IdentityError, match="^setting SANDAN_SIGNING_KEY: .*not an unencrypted PEM"):
        own_identity.load()
