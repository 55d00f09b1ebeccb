"""Writing documents as CEB XML messages (any message type of the catalogue).

Elements come out in the XSD's sequence order (the order of ``fields.json``), with the
``ceb:`` prefix, a BaseTransfer block for data messages and, for the message types the
standard requires to be signed, a placeholder ``ds:Signature``. Every document is checked
with the same field rules the reader applies, so what this module writes reads back
unchanged and validates against the official XSD.
"""
from __future__ import annotations

import re
import uuid
from decimal import Decimal

from lxml import etree

from services.common.ceb.errors import CebError
from services.common.ceb.reader import DS_NAMESPACE
from services.common.ceb.schema import EntitySpec, entity
from services.common.documents import MESSAGE_TYPES, NAMESPACE, MessageType
from services.common.senders import SUBMITTER

SOURCE = "write_message"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
VERSION = "1.0"
DEFAULT_DXP_MODE = "DXP"
_CEB = f"{{{NAMESPACE}}}"
_DS = f"{{{DS_NAMESPACE}}}"
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Code and name fields of the party that transmits each data message (BaseTransfer default).
SENDER_FIELDS = {
    "CEB311": ("ebpCode", "ebpName"),
    "CEB411": ("payCode", "payName"),
    "CEB511": ("logisticsCode", "logisticsName"),
    "CEB513": ("logisticsCode", "logisticsName"),
    "CEB621": ("agentCode", "agentName"),
    "CEB623": ("agentCode", "agentName"),
    "CEB625": ("agentCode", "agentName"),
    "CEB711": ("operatorCode", "operatorName"),
}


def write_message(code: str, documents: list[dict], *, guid: str | None = None,
                  transfer: dict | None = None) -> bytes:
    """The UTF-8 XML of message ``code`` carrying ``documents`` (document shape, see documents.py).

    ``guid``: the message's guid (default a new upper-case UUID4). ``transfer``: BaseTransfer
    fields overriding the defaults (copCode/copName from the first document's sender, dxpMode
    ``DXP``, dxpId ``DXPENT`` + copCode); only for data messages. Raises CebError naming the
    document and field when a document breaks the standard's field rules.
    """
    mt = MESSAGE_TYPES.get(code)
    if mt is None:
        raise CebError(SOURCE, f"unknown message type {code!r}")
    documents = list(documents)
    _check_count(mt, documents)
    root = etree.Element(_CEB + mt.root, nsmap={"ceb": NAMESPACE})
    root.set("guid", _message_guid(guid, mt))
    root.set("version", VERSION)
    for index, document in enumerate(documents):
        _append_document(root, mt, document, index)
    if mt.transfer:
        _append_transfer(root, mt, documents[0], transfer or {})
    elif transfer is not None:
        raise CebError(SOURCE, f"{mt.root} carries no BaseTransfer (receipts and tax messages have none)",
                       code=mt.code)
    if mt.signed:
        root.append(_placeholder_signature())
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)


def _check_count(mt: MessageType, documents: list) -> None:
    if not documents:
        raise CebError(SOURCE, "a message needs at least one document", code=mt.code)
    if mt.max_items is not None and len(documents) > mt.max_items:
        raise CebError(SOURCE, f"{len(documents)} documents, at most {mt.max_items} per {mt.root}", code=mt.code)


def _message_guid(guid: str | None, mt: MessageType) -> str:
    if guid is None:
        return str(uuid.uuid4()).upper()
    if not isinstance(guid, str) or len(guid) != 36:
        raise CebError(SOURCE, "the message guid must be a 36-character string", code=mt.code)
    return guid.upper()


def _append_document(root: etree._Element, mt: MessageType, document: dict, index: int) -> None:
    if not isinstance(document, dict):
        raise CebError(SOURCE, f"document {index} is a {type(document).__name__}, not a dict", code=mt.code)
    head_spec = entity(mt.head)
    errors: list[str] = []
    if document.get("message", mt.code) != mt.code:
        errors.append(f"document is a {document['message']}, not a {mt.code}")
    # sandan's own keys of a document: its message and its submitter (not in the standard's XML)
    allowed = {"message", "lines", SUBMITTER} if mt.body else {"message", SUBMITTER}
    head_texts = _texts(document, head_spec, mt.head, allowed, errors)
    line_texts = _line_texts(document, mt, errors) if mt.body else []
    if errors:
        raise CebError(SOURCE, "; ".join(errors), code=mt.code, document=document, index=index, errors=errors)
    parent = etree.SubElement(root, _CEB + mt.wrapper) if mt.wrapper else root
    _append_entity(parent, mt.head, head_texts)
    for texts in line_texts:
        _append_entity(parent, mt.body, texts)


def _line_texts(document: dict, mt: MessageType, errors: list[str]) -> list[dict[str, str]]:
    lines = document.get("lines")
    if not isinstance(lines, list) or not lines:
        errors.append(f"{mt.wrapper}: \"lines\" must be a non-empty list of {mt.body} dicts")
        return []
    spec = entity(mt.body)
    result = []
    for n, line in enumerate(lines, 1):
        label = f"{mt.body}[{n}]"
        if not isinstance(line, dict):
            errors.append(f"{label}: is a {type(line).__name__}, not a dict")
            continue
        result.append(_texts(line, spec, label, set(), errors))
    return result


def _texts(values: dict, spec: EntitySpec, label: str, extra_keys: set[str], errors: list[str]) -> dict[str, str]:
    """The text to write for each present field, checked by the reader's own rules."""
    unknown = [key for key in values if key not in spec.by_name and key not in extra_keys]
    if unknown:
        errors.append(f"{label}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    texts: dict[str, str] = {}
    for field_spec in spec.fields:
        value = values.get(field_spec.name)
        if value is None:
            continue
        text = _text_of(value, field_spec.kind)
        if text is None:
            errors.append(f"field {label}/{field_spec.name}: a {type(value).__name__} cannot be a "
                          f"{field_spec.kind} field (amounts are Decimal, never float)")
        elif _NOT_XML_CHAR.search(text):
            errors.append(f"field {label}/{field_spec.name}: contains characters XML 1.0 cannot carry")
        else:
            texts[field_spec.name] = text
    checked, problems = spec.check_texts(texts, label)
    errors.extend(problems)
    # check_texts drops empty optional fields; write exactly what the reader will keep.
    return {name: text for name, text in texts.items() if name in checked}


def _text_of(value, kind: str) -> str | None:
    if isinstance(value, bool):
        return None
    if kind == "string":
        return value if isinstance(value, str) else None
    if isinstance(value, int):
        return str(value)
    if kind == "decimal" and isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else "NaN"  # NaN fails the decimal check
    if isinstance(value, str):
        return value
    return None


def _append_entity(parent: etree._Element, name: str, texts: dict[str, str]) -> None:
    element = etree.SubElement(parent, _CEB + name)
    for field_spec in entity(name).fields:
        text = texts.get(field_spec.name)
        if text is not None:
            etree.SubElement(element, _CEB + field_spec.name).text = text


def _append_transfer(root: etree._Element, mt: MessageType, first: dict, overrides: dict) -> None:
    code_field, name_field = SENDER_FIELDS[mt.code]
    cop_code = overrides.get("copCode") or first.get(code_field)
    values = {"copCode": cop_code, "copName": first.get(name_field), "dxpMode": DEFAULT_DXP_MODE,
              "dxpId": f"DXPENT{cop_code}"[:30]}
    values.update(overrides)
    errors: list[str] = []
    texts = _texts(values, entity("BaseTransfer"), "BaseTransfer", set(), errors)
    if errors:
        raise CebError(SOURCE, "; ".join(errors), code=mt.code)
    _append_entity(root, "BaseTransfer", texts)


def _placeholder_signature() -> etree._Element:
    """A ds:Signature that satisfies the XSD's structure and nothing more.

    It is NOT a real signature: no digest, no signature value, no key. Messages that go to
    customs must be signed by the sender's own signing system, which replaces this block.
    """
    signature = etree.Element(_DS + "Signature", nsmap={"ds": DS_NAMESPACE})
    info = etree.SubElement(signature, _DS + "SignedInfo")
    etree.SubElement(info, _DS + "CanonicalizationMethod",
                     Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
    etree.SubElement(info, _DS + "SignatureMethod", Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1")
    reference = etree.SubElement(info, _DS + "Reference", URI="")
    transforms = etree.SubElement(reference, _DS + "Transforms")
    etree.SubElement(transforms, _DS + "Transform",
                     Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    etree.SubElement(reference, _DS + "DigestMethod", Algorithm="http://www.w3.org/2000/09/xmldsig#sha1")
    etree.SubElement(reference, _DS + "DigestValue").text = ""
    etree.SubElement(signature, _DS + "SignatureValue").text = ""
    return signature
