"""Turning untrusted bytes into an lxml tree without the usual XML traps.

CEB messages come from outside parties, so: a size cap before anything is parsed, strict
UTF-8, no DTD at all (a DOCTYPE is refused outright, which rules out entity expansion
bombs and external entities such as ``file:///etc/passwd``), no network, no huge trees.
"""
from __future__ import annotations

import re
import threading

from lxml import etree

from services.common.ceb.errors import CebError

UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_DECLARED_ENCODING = re.compile(r"""<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")
_MESSAGE_CHARS = 200

_local = threading.local()  # lxml parsers must not be shared between threads


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_comments=True, remove_pis=True, collect_ids=False,
        )
        _local.parser = parser
    return parser


def load(data: bytes, *, source: str, max_bytes: int) -> etree._Element:
    """The root element of ``data``, or CebError saying why the bytes are not acceptable XML."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"CEB messages are bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise CebError(source, f"input is {len(data)} bytes, larger than the limit of {max_bytes} "
                               f"(SANDAN_CEB_MAX_BYTES)")
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    elif data.startswith(_UTF16_BOMS):
        raise CebError(source, "input is UTF-16 encoded; CEB messages are UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CebError(source, f"input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                               f"{exc.start})") from None
    if not text.strip():
        raise CebError(source, "input is empty")
    _check_declared_encoding(text, source)
    _refuse_doctype(text, source)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise CebError(source, f"not well-formed XML: {_syntax_message(exc)}") from None
    if root.getroottree().docinfo.doctype:  # the prolog scan should have caught it already
        raise CebError(source, "a DOCTYPE declaration is not allowed in CEB messages")
    return root


def _check_declared_encoding(text: str, source: str) -> None:
    match = _DECLARED_ENCODING.match(text.lstrip())
    if match and match.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise CebError(source, f"the XML declaration names encoding {match.group(1)[:30]!r}; "
                               f"CEB messages are UTF-8")


def _refuse_doctype(text: str, source: str) -> None:
    """Refuse a DOCTYPE in the prolog: entity declarations can only live inside one.

    Only the prolog is scanned (XML declaration, comments, processing instructions and
    white space before the root element), because a DOCTYPE is only legal there and the
    same characters may appear harmlessly inside CDATA further on.
    """
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] in " \t\r\n":
            pos += 1
        elif text.startswith("<?", pos):
            close = text.find("?>", pos + 2)
            pos = end if close < 0 else close + 2
        elif text.startswith("<!--", pos):
            close = text.find("-->", pos + 4)
            pos = end if close < 0 else close + 3
        elif text.startswith("<!", pos):
            word = text[pos + 2:pos + 9].upper()
            what = "DOCTYPE" if word.startswith("DOCTYPE") else "markup declaration"
            raise CebError(source, f"a {what} is not allowed in CEB messages (DTDs and entity "
                                   f"declarations are refused)")
        else:
            return


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    message = (exc.msg or str(exc)).strip()
    if len(message) > _MESSAGE_CHARS:
        message = message[:_MESSAGE_CHARS] + "…"
    line = getattr(exc, "lineno", None)
    return f"{message} (line {line})" if line and f"line {line}" not in message else message
