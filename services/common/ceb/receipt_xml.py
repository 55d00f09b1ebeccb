"""Receipts (``sandan.Receipt`` records) as the standard's CEB XML messages.

A receipt record carries the fields of every receipt kind; each kind's XML entity takes the
ones the XSD names for it (``fields.json``), in the XSD's order, through ``writer``. Receipts
to one receiver of one message code go together, at most 100 to a message as the standard
allows. A message's guid is derived from the guids of the receipts inside, so writing the
same receipts again gives the same message.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from services.common.ceb.errors import CebError
from services.common.ceb.schema import entity
from services.common.ceb.writer import write_message
from services.common.documents import MAX_DOCUMENTS_PER_MESSAGE, MESSAGE_TYPES

SOURCE = "receipt_xml"
CODES = ("CEB312", "CEB412", "CEB512", "CEB514", "CEB622", "CEB624", "CEB626", "CEB712", "CEB816", "CEB818")
_MESSAGE_IDS = uuid.UUID("2f0c7a4e-8b1d-4c55-9e0a-6d3b5a1c9f27")
# Entity fields whose value sits under another name in the record.
_RENAMED = {"status": "taxStatus"}
_TAX_LINE = "TaxListRd"


class ReceiptXmlError(CebError):
    """A receipt that cannot be written as the XSD requires; names the receipt and the field."""

    def __init__(self, code: str, guid: str | None, field: str | None, problem: str) -> None:
        self.field = field
        super().__init__(SOURCE, f"receipt {guid or '?'}: {problem}", code=code)
        self.guid = guid


@dataclass(frozen=True)
class ReceiptMessage:
    code: str                # "CEB312"
    receiver: str            # customs code of the enterprise it is addressed to
    guids: tuple[str, ...]   # the receipts inside, in order
    xml: bytes


def receipt_messages(receipts: Iterable[dict], *, max_per_message: int = MAX_DOCUMENTS_PER_MESSAGE
                     ) -> list[ReceiptMessage]:
    """The receipts grouped by (receiver, message code) in order of first appearance, each
    group cut into messages of at most ``max_per_message``."""
    if not 1 <= max_per_message <= MAX_DOCUMENTS_PER_MESSAGE:
        raise ValueError(f"max_per_message must be 1..{MAX_DOCUMENTS_PER_MESSAGE}")
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in receipts:
        groups.setdefault((rec.get("receiver") or "", rec.get("message") or ""), []).append(rec)
    messages = []
    for (receiver, code), recs in groups.items():
        for start in range(0, len(recs), max_per_message):
            part = recs[start:start + max_per_message]
            messages.append(ReceiptMessage(code, receiver, tuple(r.get("guid") for r in part),
                                           receipt_message(code, part)))
    return messages


def receipt_message(code: str, receipts: list[dict]) -> bytes:
    """One ``CEBnnnMessage`` carrying ``receipts`` (all of message ``code``, at most 100)."""
    if code not in CODES:
        raise ReceiptXmlError(code, None, None, f"{code!r} is not a receipt or tax message sandan writes")
    receipts = list(receipts)
    if not receipts or len(receipts) > MAX_DOCUMENTS_PER_MESSAGE:
        raise ReceiptXmlError(code, None, None, f"{len(receipts)} receipts: a message carries 1 to "
                                                f"{MAX_DOCUMENTS_PER_MESSAGE}")
    documents = [document(code, rec) for rec in receipts]
    guid = str(uuid.uuid5(_MESSAGE_IDS, code + "|" + "|".join(d["guid"] for d in documents))).upper()
    try:
        return write_message(code, documents, guid=guid)
    except CebError as exc:
        raise ReceiptXmlError(code, exc.guid, None, exc.detail) from None


def document(code: str, rec: dict) -> dict:
    """The receipt as a document of its message's entity (what ``writer`` takes)."""
    guid = rec.get("guid")
    if rec.get("message") != code:
        raise ReceiptXmlError(code, guid, "message", f"is a {rec.get('message')!r} receipt, not a {code}")
    mt = MESSAGE_TYPES[code]
    values = dict(rec)
    if code == "CEB712":
        values["operatorCode"] = rec.get("receiver")  # a CEB711's receipt goes to its operator
    doc = _fields(code, guid, mt.head, values)
    doc["message"] = code
    if mt.body == _TAX_LINE:
        lines = rec.get("taxLines") or []
        if not lines:
            raise ReceiptXmlError(code, guid, "taxLines", "a tax bill needs at least one line (TaxListRd)")
        doc["lines"] = [_fields(code, guid, _TAX_LINE, line, f"taxLines[{n}]/") for n, line in enumerate(lines, 1)]
    return doc


def _fields(code: str, guid: str | None, name: str, values: dict, label: str = "") -> dict:
    out = {}
    for spec in entity(name).fields:
        value = values.get(_RENAMED.get(spec.name, spec.name))
        if isinstance(value, str):
            value = value.strip() or None
        if value is None:
            if spec.required:
                raise ReceiptXmlError(code, guid, label + _RENAMED.get(spec.name, spec.name),
                                      f"{label}{_RENAMED.get(spec.name, spec.name)} is missing: {name}/{spec.name}"
                                      f" is required by the XSD")
            continue
        out[spec.name] = value
    return out
