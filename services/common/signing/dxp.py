"""The transport envelope ``dxp:DxpMsg`` (terminal-node-DxpMsg-202205.xsd) around a CEB message,
signed: how sandan signs the receipts it writes.

The official XSD gives receipt messages (CEB312 … CEB818) no ``ds:Signature``; the envelope
carries one. ``TransInfo`` says who sends what to whom (``CopMsgId`` the message's guid,
``SenderId`` sandan's node, ``ReceiverIds`` the receiver, ``CreatTime``, ``MsgType`` CEBnnn),
``Data`` is the CEB message in base64, and an enveloped XML-DSig (``xmldsig``, C14N 1.0) over the
whole envelope is its last child. A changed byte anywhere in it, ``Data`` included, fails the
digest.

The XSD allows at most 16 characters per node id. A receiver code longer than that (an
18-character unified social credit code) goes in ``ReceiverId`` as the 9-character organisation
code inside it (characters 9-17), and whole in ``AddInfo/BizKey/Key name="receiverCode"``.

Pure: no Kafka, Redis or gRPC.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from services.common.ceb import safe_xml
from services.common.signing.crypto import MALFORMED, Certificate, PrivateKey, SignatureError
from services.common.signing.xmldsig import Verified, sign_root, verify_ceb

DXP_NAMESPACE = "http://www.chinaport.gov.cn/dxp"
_DXP = f"{{{DXP_NAMESPACE}}}"
ENVELOPE_TAG = _DXP + "DxpMsg"
NODE_ID_CHARS = 16  # SenderId, ReceiverId: maxLength 16 in the XSD
_CEB_ROOT = re.compile(r"CEB(\d{3})Message")
_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")


@dataclass(frozen=True)
class Envelope:
    """What a DxpMsg says about the message it carries (read, and verified by ``verify``)."""
    msg_id: str        # CopMsgId
    sender: str        # SenderId
    receivers: tuple[str, ...]
    created: str       # CreatTime as written
    msg_type: str      # MsgType, e.g. CEB312
    receiver_code: str | None  # AddInfo/BizKey/Key[@name="receiverCode"]
    data: bytes        # the CEB message


def is_envelope(root: etree._Element) -> bool:
    return root.tag == ENVELOPE_TAG


def node_id(code: str) -> str:
    """A code as the envelope's node id: itself when it fits, the organisation code of an
    18-character credit code, else refused."""
    code = code.strip()
    if 1 <= len(code) <= NODE_ID_CHARS:
        return code
    if _USCC.fullmatch(code.upper()):
        return code[8:17]
    raise ValueError(f"{code[:30]!r} is no node id (1-{NODE_ID_CHARS} characters) nor an 18-character credit code")


def _message_root(ceb_xml: bytes) -> tuple[str, str]:
    root = safe_xml.load(ceb_xml, source="<envelope data>", max_bytes=max(len(ceb_xml), 1))
    found = _CEB_ROOT.fullmatch(etree.QName(root).localname)
    if found is None:
        raise ValueError(f"{etree.QName(root).localname[:40]} is not a CEB message")
    return f"CEB{found.group(1)}", root.get("guid") or ""


def wrap(ceb_xml: bytes, *, sender_id: str, receiver: str, created: datetime, key: PrivateKey,
         certificate: Certificate) -> bytes:
    """``ceb_xml`` in a signed DxpMsg to ``receiver`` (an enterprise code), from node ``sender_id``.
    ``created`` is aware (written as xs:dateTime with its offset)."""
    msg_type, guid = _message_root(ceb_xml)
    if not guid:
        raise ValueError(f"{msg_type}Message has no guid for the envelope's CopMsgId")
    root = etree.Element(ENVELOPE_TAG, nsmap={"dxp": DXP_NAMESPACE}, ver="1.0")
    info = etree.SubElement(root, _DXP + "TransInfo")
    etree.SubElement(info, _DXP + "CopMsgId").text = guid
    etree.SubElement(info, _DXP + "SenderId").text = node_id(sender_id)
    receivers = etree.SubElement(info, _DXP + "ReceiverIds")
    etree.SubElement(receivers, _DXP + "ReceiverId").text = node_id(receiver)
    etree.SubElement(info, _DXP + "CreatTime").text = created.isoformat(timespec="seconds")
    etree.SubElement(info, _DXP + "MsgType").text = msg_type
    etree.SubElement(root, _DXP + "Data").text = base64.b64encode(ceb_xml).decode("ascii")
    add = etree.SubElement(root, _DXP + "AddInfo")
    keys = etree.SubElement(etree.SubElement(add, _DXP + "BizKey"), _DXP + "Key", name="receiverCode")
    keys.text = receiver.strip()
    sign_root(root, key, certificate)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _text(parent: etree._Element, path: str) -> str:
    found = parent.find(path)
    return (found.text or "").strip() if found is not None else ""


def read(root: etree._Element) -> Envelope:
    """The envelope's fields and the message it carries (not verified: see ``verify``)."""
    if not is_envelope(root):
        raise SignatureError(MALFORMED, f"{etree.QName(root).localname[:40]} is not a dxp:DxpMsg")
    info = root.find(_DXP + "TransInfo")
    if info is None:
        raise SignatureError(MALFORMED, "dxp:DxpMsg has no dxp:TransInfo")
    data = root.find(_DXP + "Data")
    try:
        payload = base64.b64decode("".join((data.text or "").split()) if data is not None else "", validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(MALFORMED, "dxp:Data is not base64") from None
    if not payload:
        raise SignatureError(MALFORMED, "dxp:Data is empty")
    code = root.find(f"{_DXP}AddInfo/{_DXP}BizKey/{_DXP}Key[@name='receiverCode']")
    return Envelope(_text(info, _DXP + "CopMsgId"), _text(info, _DXP + "SenderId"),
                    tuple((r.text or "").strip() for r in info.findall(f"{_DXP}ReceiverIds/{_DXP}ReceiverId")),
                    _text(info, _DXP + "CreatTime"), _text(info, _DXP + "MsgType"),
                    (code.text or "").strip() if code is not None else None, payload)


def verify(root: etree._Element, certificate: Certificate | None = None) -> tuple[Verified, Envelope]:
    """The envelope's signature checked (with ``certificate``; default the embedded one, which
    proves integrity only), then what it carries: SignatureError if either fails."""
    if not is_envelope(root):
        raise SignatureError(MALFORMED, f"{etree.QName(root).localname[:40]} is not a dxp:DxpMsg")
    verified = verify_ceb(root, certificate)
    envelope = read(root)
    try:
        msg_type, guid = _message_root(envelope.data)
    except Exception as exc:  # noqa: BLE001 - whatever the payload is, it is not the message the envelope names
        raise SignatureError(MALFORMED, f"dxp:Data holds no readable CEB message ({str(exc)[:120]})") from None
    if msg_type != envelope.msg_type or guid != envelope.msg_id:
        raise SignatureError(MALFORMED, f"dxp:TransInfo names {envelope.msg_type} {envelope.msg_id}, dxp:Data holds "
                                        f"{msg_type} {guid}")
    return verified, envelope

