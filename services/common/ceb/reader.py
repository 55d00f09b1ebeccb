"""Reading CEB XML messages into documents (see ``services.common.documents``).

``parse_message`` checks a message in three layers: the bytes (``safe_xml``), the message's
structure (root, namespace, which blocks it holds and how many documents), then each
business document's fields (``schema``: the standard's lengths, digits and time formats and
DOMAIN §2a's decisions; optionally also the official XSD, ``xsd``). A structural problem
always raises ``CebError``; a bad document raises in strict mode and is set aside as a
``RejectedDocument`` in lenient mode (with its refusal ``code``: APP_TIME, FIXED_VALUES or
FORMAT_CHECK), so one bad order does not sink the other 99. Signatures (``ds:Signature``)
are not verified here, only required where the standard requires them (``require_signature``;
the gateway verifies them with ``services.common.signing``); ``BaseSubscribe`` and
``ExtendMessage`` are ignored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from services.common import config
from services.common.ceb import safe_xml, xsd
from services.common.ceb.errors import CebError, RejectedDocument
from services.common.ceb.schema import ROOT_ATTRIBUTES, EntitySpec, FieldProblem, entity
from services.common.documents import BY_ROOT, NAMESPACE, MessageType

DS_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"
_CEB = f"{{{NAMESPACE}}}"
TRANSFER_TAG = f"{_CEB}BaseTransfer"
SUBSCRIBE_TAG = f"{_CEB}BaseSubscribe"
EXTEND_TAG = f"{_CEB}ExtendMessage"
SIGNATURE_TAG = f"{{{DS_NAMESPACE}}}Signature"
_XML_SPACE = " \t\r\n"
# Body lines per document in the XSD: 99, except a warehouse-entry detail's parcel list.
DEFAULT_MAX_LINES = 99
MAX_LINES = {"DeliveryList": None}
# Optional blocks of data messages and how often each may occur (XSD).
_OPTIONAL_BLOCKS = {SUBSCRIBE_TAG: 5, EXTEND_TAG: 1, SIGNATURE_TAG: 1}


@dataclass
class ParsedMessage:
    code: str                      # "CEB311"
    guid: str                      # the message's own guid (root attribute)
    version: str
    documents: list[dict]          # valid business documents, in message order
    transfer: dict | None          # BaseTransfer fields (data messages), None for receipts
    rejected: list[RejectedDocument] = field(default_factory=list)  # lenient mode only
    source: str = "<bytes>"
    root: etree._Element | None = field(default=None, repr=False, compare=False)  # for signature checks


@dataclass
class _Layout:
    items: list[etree._Element]
    transfer: etree._Element | None


def parse_message(data: bytes, *, source: str = "<bytes>", lenient: bool = False,
                  xsd_dir: str | os.PathLike | None = None, max_bytes: int | None = None,
                  require_signature: bool | None = None) -> ParsedMessage:
    """Read one CEB message.

    ``xsd_dir``: folder of the official XSDs for strict schema validation; ``None`` uses the
    ``CEB_XSD_DIR`` setting, ``""`` turns it off. ``max_bytes``: size limit, default the
    ``SANDAN_CEB_MAX_BYTES`` setting. ``require_signature``: whether a message without
    ``ds:Signature`` is refused; ``None`` as the standard says for its type (621/623/625/711).
    """
    limit = config.get_int("SANDAN_CEB_MAX_BYTES") if max_bytes is None else max_bytes
    root = safe_xml.load(data, source=source, max_bytes=limit)
    mt = _message_type(root, source)
    guid, version = _root_attributes(root, mt, source)
    layout = _layout(root, mt, source, mt.signed if require_signature is None else require_signature)
    transfer = _transfer(layout.transfer, mt, source)
    xsd_found = _xsd_problems(root, layout, mt, source, xsd_dir)

    documents: list[dict] = []
    rejected: list[RejectedDocument] = []
    for index, item in enumerate(layout.items):
        document, raw, errors = _read_item(item, mt)
        errors = errors or xsd_found.get(index, [])
        if not errors:
            documents.append(document)
        elif lenient:
            rejected.append(RejectedDocument(index, _text_or_none(raw, "guid"), _text_or_none(raw, "orderNo"),
                                             errors, raw))
        else:
            raise CebError(source, "; ".join(errors), code=mt.code, document=raw, index=index, errors=errors)
    return ParsedMessage(mt.code, guid, version, documents, transfer, rejected, source, root)


def parse_file(path: str | os.PathLike, **options) -> ParsedMessage:
    """``parse_message`` on a file; OSError (missing, unreadable) propagates unchanged."""
    limit = options.pop("max_bytes", None)
    limit = config.get_int("SANDAN_CEB_MAX_BYTES") if limit is None else limit
    source = str(path)
    with open(Path(path), "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:  # refuse before reading a huge file into memory
            raise CebError(source, f"input is {size} bytes, larger than the limit of {limit} (SANDAN_CEB_MAX_BYTES)")
        data = handle.read(limit + 1)
    return parse_message(data, source=source, max_bytes=limit, **options)


def _read_item(item: etree._Element, mt: MessageType) -> tuple[dict, dict, list[str]]:
    """One business document: (typed document, raw texts, problems)."""
    errors: list[str] = []
    head_spec = entity(mt.head)
    head, lines = (_split_wrapper(item, mt, errors) if mt.wrapper else (item, []))
    head_texts = _texts(head, head_spec, mt.head, errors) if head is not None else {}
    values, problems = head_spec.check_texts(head_texts, mt.head)
    errors.extend(problems)
    document = {"message": mt.code, **values}
    raw = {"message": mt.code, **head_texts}
    if mt.body:
        document["lines"], raw["lines"] = _read_lines(lines, mt, errors)
    return document, raw, errors


def _split_wrapper(item: etree._Element, mt: MessageType, errors: list[str]):
    head_tag = _CEB + mt.head
    body_tag = _CEB + mt.body if mt.body else None
    head = None
    lines = []
    for child in item:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == head_tag:
            if head is None:
                head = child
            else:
                errors.append(f"{mt.wrapper}: more than one {mt.head}")
        elif tag == body_tag:
            lines.append(child)
        else:
            errors.append(f"{mt.wrapper}: unknown element {element_name(tag)}")
    if head is None:
        errors.append(f"{mt.wrapper}: {mt.head} is missing")
    return head, lines


def _read_lines(elements: list, mt: MessageType, errors: list[str]) -> tuple[list[dict], list[dict]]:
    spec = entity(mt.body)
    limit = MAX_LINES.get(mt.body, DEFAULT_MAX_LINES)
    if not elements:
        errors.append(f"{mt.wrapper}: at least one {mt.body} required")
    elif limit is not None and len(elements) > limit:
        errors.append(f"{mt.wrapper}: {len(elements)} {mt.body} lines, at most {limit} allowed")
    lines, raw_lines = [], []
    for n, element in enumerate(elements, 1):
        label = f"{mt.body}[{n}]"
        texts = _texts(element, spec, label, errors)
        values, problems = spec.check_texts(texts, label)
        errors.extend(problems)
        lines.append(values)
        raw_lines.append(texts)
    return lines, raw_lines


def _texts(element: etree._Element, spec: EntitySpec, label: str, errors: list[str]) -> dict[str, str]:
    """Trimmed text of each known child; unknown, repeated or nested children are errors."""
    texts: dict[str, str] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        field_spec = spec.by_tag.get(tag)
        if field_spec is None:
            errors.append(f"{label}: unknown element {element_name(tag)}")
        elif field_spec.name in texts:
            errors.append(f"field {label}/{field_spec.name}: appears more than once")
        elif len(child):
            errors.append(f"field {label}/{field_spec.name}: must hold text, not elements")
            texts[field_spec.name] = "".join(child.itertext()).strip(_XML_SPACE)
        else:
            texts[field_spec.name] = (child.text or "").strip(_XML_SPACE)
    return texts


def element_name(tag: str) -> str:
    """``ceb:Order`` / ``ds:Signature`` / ``Order (namespace 'urn:x')`` for messages."""
    if not tag.startswith("{"):
        return f"{tag} (no namespace)"
    namespace, _, local = tag[1:].partition("}")
    if namespace == NAMESPACE:
        return f"ceb:{local}"
    if namespace == DS_NAMESPACE:
        return f"ds:{local}"
    return f"{local} (namespace {namespace[:100]!r})"


def _message_type(root: etree._Element, source: str) -> MessageType:
    tag = root.tag
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    mt = BY_ROOT.get(local)
    if mt is None:
        raise CebError(source, f"root element {element_name(tag)} is not a CEB message (CEB311Message, "
                               f"CEB411Message ...)")
    if namespace != NAMESPACE:
        where = f"namespace {namespace[:100]!r}" if namespace else "no namespace"
        raise CebError(source, f"root element {local} is in {where}; expected {NAMESPACE!r}", code=mt.code)
    return mt


def _root_attributes(root: etree._Element, mt: MessageType, source: str) -> tuple[str, str]:
    values = []
    for spec in ROOT_ATTRIBUTES.fields:
        text = root.get(spec.name)
        if text is None:
            raise CebError(source, f"{mt.root}: attribute {spec.name} is missing", code=mt.code)
        try:
            values.append(spec.convert(text.strip(_XML_SPACE)))
        except FieldProblem as exc:
            raise CebError(source, f"{mt.root}: attribute {spec.name} {exc}", code=mt.code) from None
    return values[0], values[1]


def _layout(root: etree._Element, mt: MessageType, source: str, require_signature: bool) -> _Layout:
    item_tag = _CEB + (mt.wrapper or mt.head)
    item_name = mt.wrapper or mt.head
    items: list[etree._Element] = []
    transfers: list[etree._Element] = []
    optional = dict.fromkeys(_OPTIONAL_BLOCKS, 0)
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag == item_tag:
            items.append(child)
        elif mt.transfer and tag == TRANSFER_TAG:
            transfers.append(child)
        elif mt.transfer and tag in optional:
            optional[tag] += 1
        else:
            raise CebError(source, f"unexpected element {element_name(tag)} in {mt.root}", code=mt.code)
    if not items:
        raise CebError(source, f"{mt.root} holds no ceb:{item_name}", code=mt.code)
    if mt.max_items is not None and len(items) > mt.max_items:
        raise CebError(source, f"{mt.root} holds {len(items)} ceb:{item_name} documents, at most "
                               f"{mt.max_items} allowed", code=mt.code)
    if mt.transfer and len(transfers) != 1:
        raise CebError(source, f"{mt.root} needs exactly one ceb:BaseTransfer, found {len(transfers)}",
                       code=mt.code)
    for tag, count in optional.items():
        if count > _OPTIONAL_BLOCKS[tag]:
            raise CebError(source, f"{mt.root} holds {count} {element_name(tag)}, at most "
                                   f"{_OPTIONAL_BLOCKS[tag]} allowed", code=mt.code)
    if require_signature and not optional[SIGNATURE_TAG]:
        raise CebError(source, f"{mt.root} needs a ds:Signature (the standard requires one)", code=mt.code)
    return _Layout(items, transfers[0] if transfers else None)


def _transfer(element: etree._Element | None, mt: MessageType, source: str) -> dict | None:
    if element is None:
        return None
    errors: list[str] = []
    spec = entity("BaseTransfer")
    values, problems = spec.check_texts(_texts(element, spec, "BaseTransfer", errors))
    errors.extend(problems)
    if errors:
        raise CebError(source, "; ".join(errors), code=mt.code)
    return values


def _xsd_problems(root: etree._Element, layout: _Layout, mt: MessageType, source: str,
                  xsd_dir: str | os.PathLike | None) -> dict[int, list[str]]:
    """XSD violations per document index; violations outside any document raise."""
    directory = xsd.configured_dir() if xsd_dir is None else xsd_dir
    if not directory:
        return {}
    schema = xsd.schema_for(directory)
    found = xsd.problems(schema, root)
    if not found:
        return {}
    by_item, outside = _by_item(found, root, layout.items)
    if outside:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise CebError(source, f"does not match the CEB XSD: {outside[0].message}{more}", code=mt.code)
    return by_item


def _by_item(found: list[xsd.XsdProblem], root: etree._Element, items: list) -> tuple[dict, list]:
    children = [c for c in root if isinstance(c.tag, str)]
    position = {id(item): index for index, item in enumerate(items)}
    by_item: dict[int, list[str]] = {}
    outside: list[xsd.XsdProblem] = []
    for problem in found:
        child = _root_child(problem.path, children)
        index = position.get(id(child)) if child is not None else None
        if index is None:
            outside.append(problem)
        else:
            by_item.setdefault(index, []).append(f"XSD: {problem.message}")
    return by_item, outside


def _root_child(path: str, children: list) -> etree._Element | None:
    """The root's child a libxml2 path such as ``/ceb:CEB311Message/ceb:Order[2]/…`` runs through."""
    steps = path.split("/")
    if len(steps) < 3 or steps[0]:
        return None
    name, _, position = steps[2].partition("[")
    try:
        nth = int(position.rstrip("]")) if position else 1
    except ValueError:
        return None
    local = name.rpartition(":")[2]
    matching = children if local == "*" else [c for c in children if etree.QName(c).localname == local]
    return matching[nth - 1] if 0 < nth <= len(matching) else None


def _text_or_none(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    return value or None
