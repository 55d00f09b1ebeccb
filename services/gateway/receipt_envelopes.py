"""Receipt messages signed in their transport envelope (``dxp:DxpMsg``) with sandan's own key,
as the Receipts stream hands them out in format CEB_XML (``ReceiptMessage.signed_envelope``).

Pure: the key and certificate are loaded once by the server (``own_identity``).
"""
from __future__ import annotations

import logging
from datetime import datetime

from services.common.ceb.receipt_xml import ReceiptMessage
from services.common.clock import CHINA, now_ms
from services.common.signing import dxp
from services.common.signing.crypto import Certificate, PrivateKey, SignatureError

log = logging.getLogger("sandan.gateway")


class ReceiptSigner:
    def __init__(self, key: PrivateKey, certificate: Certificate, node_id: str, clock=now_ms) -> None:
        self.key, self.certificate, self.clock = key, certificate, clock
        self.node_id = dxp.node_id(node_id)  # ValueError at start for a node id the XSD would refuse

    def envelope(self, message: ReceiptMessage) -> bytes:
        """The signed envelope of ``message``; empty (and logged) when it cannot be made, so the
        receipts still reach their receiver unsigned rather than not at all."""
        try:
            return dxp.wrap(message.xml, sender_id=self.node_id, receiver=message.receiver,
                            created=datetime.fromtimestamp(self.clock() / 1000, CHINA), key=self.key,
                            certificate=self.certificate)
        except (ValueError, SignatureError) as exc:
            log.warning("receipt message %s to %s not signed: %s", message.code, message.receiver, exc)
            return b""
