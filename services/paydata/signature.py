"""An upload's signature against the platform's registered certificates (pure).

``certNo`` must name a certificate the registry (``sandan certs``) binds to the platform, valid
at the upload and not revoked; ``signValue`` must verify over the 179 ``||`` text with it.
Each refusal says which, with the signing component's own reason code.
"""
from __future__ import annotations

from datetime import datetime

from services.common.signing.crypto import SignatureError
from services.common.signing.paydata import verify_paydata
from services.common.signing.registry import CertificateBook
from services.paydata.protocol import CERTIFICATE, SIGNATURE, Upload, UploadError


def check(upload: Upload, ebp_code: str, book: CertificateBook, at: datetime) -> None:
    """Nothing when the upload is signed by a registered, valid, unrevoked certificate of ``ebp_code``."""
    try:
        certificate = book.check(upload.cert_no, frozenset({ebp_code}), at)
    except SignatureError as exc:
        raise UploadError(CERTIFICATE, "certNo", f"{exc.reason}: {exc.message}") from None
    try:
        verify_paydata(certificate, upload.payload, upload.sign_value)
    except SignatureError as exc:
        raise UploadError(SIGNATURE, "signValue", f"{exc.reason}: {exc.message}") from None
