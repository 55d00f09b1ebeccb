"""Optional strict validation against the official CEB XSD (setting ``CEB_XSD_DIR``).

The field checks in ``schema.py`` cover lengths, numbers and required fields without any
schema file; the XSD adds what they deliberately leave out (element order, the structure
of ``ds:Signature``). The XSD is not shipped with sandan: point ``CEB_XSD_DIR`` at a folder
holding ``import-business-node-202205.xsd`` and ``xmldsig-core-schema.xsd``.
"""
from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from services.common import config
from services.common.ceb.errors import CebError
from services.common.ceb.schema import PII_FIELDS
from services.common.documents import NAMESPACE

SCHEMA_FILE = "import-business-node-202205.xsd"
DXP_SCHEMA_FILE = "terminal-node-DxpMsg-202205.xsd"  # the transport envelope (dxp:DxpMsg) of sandan's signed receipts
_FACET = re.compile(r"\[facet '(\w+)'\]")
_ELEMENT = re.compile(r"^Element '(?:\{[^}]*\})?([\w.-]+)'")
_MESSAGE_CHARS = 300
_validate_lock = threading.Lock()  # an XMLSchema's error_log belongs to its last validation


@dataclass(frozen=True)
class XsdProblem:
    path: str      # libxml2's XPath of the offending element, e.g. /ceb:CEB311Message/ceb:Order[2]/...
    message: str   # already redacted: safe to log


def configured_dir() -> str | None:
    return config.get("CEB_XSD_DIR") or None


def schema_for(xsd_dir: str | Path, name: str = SCHEMA_FILE) -> etree.XMLSchema:
    path = Path(xsd_dir).expanduser().resolve() / name
    if not path.is_file():
        raise CebError(str(path), "CEB XSD not found (check CEB_XSD_DIR)")
    return _compiled(str(path))


@functools.lru_cache(maxsize=4)
def _compiled(path: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.XMLSchema(etree.parse(path, parser))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
        raise CebError(path, f"cannot load the CEB XSD: {exc}") from None


def problems(schema: etree.XMLSchema, root: etree._Element) -> list[XsdProblem]:
    """Every XSD violation in the tree under ``root``; empty when it is valid."""
    with _validate_lock:
        if schema.validate(root):
            return []
        entries = list(schema.error_log)
    return [XsdProblem(entry.path or "", redact(entry.message)) for entry in entries]


def redact(message: str) -> str:
    """An lxml validation message made safe to log.

    libxml2 quotes the offending value; for personal fields only the element and the facet
    (or kind of problem) remain. The namespace is dropped everywhere for readability.
    """
    element = _ELEMENT.match(message)
    if element and element.group(1) in PII_FIELDS:
        facet = _FACET.search(message)
        reason = f"violates facet '{facet.group(1)}'" if facet else "has an invalid value"
        return f"element {element.group(1)}: {reason} (value not shown: personal data)"
    message = message.replace(f"{{{NAMESPACE}}}", "ceb:")
    return message if len(message) <= _MESSAGE_CHARS else message[:_MESSAGE_CHARS] + "…"
