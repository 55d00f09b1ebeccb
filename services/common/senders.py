"""Who sent an input document, and so who may change it and who hears back about it.

A document carries ``submitter``: the enterprise code that sent it in (the gateway's
authenticated caller, or the publisher's code for ``sandan publish``). It is sandan's own
field, not the standard's, and does not appear in the CEB XML. Records written before it
existed have none; for them the standard's own sender field stands in.
"""
from __future__ import annotations

from collections.abc import Iterable

SUBMITTER = "submitter"

# Fields of each input message that may name its sender (an order: the platform or the
# enterprise; an inventory: its agent or the enterprise). The gateway's caller must be one.
SENDER_FIELDS = {
    "CEB311": ("ebpCode", "ebcCode"),
    "CEB411": ("payCode",),
    "CEB511": ("logisticsCode",),
    "CEB513": ("logisticsCode",),
    "CEB621": ("agentCode", "ebcCode"),
    "CEB623": ("agentCode", "ebcCode"),
    "CEB625": ("agentCode", "ebcCode"),
    "CEB711": ("operatorCode",),
}
INPUT_MESSAGES = tuple(SENDER_FIELDS)

# The one field that names the sender of a document that carries no submitter.
OWN_SENDER_FIELD = {"CEB311": "ebpCode", "CEB411": "payCode", "CEB511": "logisticsCode", "CEB513": "logisticsCode",
                    "CEB621": "agentCode", "CEB623": "agentCode", "CEB625": "agentCode", "CEB711": "operatorCode"}


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def own_sender(doc: dict) -> str:
    """The code the document's own sender field names ("" when it names none)."""
    return _text(doc.get(OWN_SENDER_FIELD.get(doc.get("message"), "ebpCode")))


def submitter_of(doc: dict) -> str:
    """Who sent the document: its submitter, else (an old record) its own sender field."""
    return _text(doc.get(SUBMITTER)) or own_sender(doc)


def same_sender(held: dict, change: dict) -> bool:
    """Whether ``change`` (appType 2/3) comes from whoever sent ``held``.

    Both carry a submitter: they must be equal. Where either lacks one (a record from
    before submitters) the two documents' own sender fields are compared instead.
    """
    a, b = _text(held.get(SUBMITTER)), _text(change.get(SUBMITTER))
    if a and b:
        return a == b
    return own_sender(held) == own_sender(change)


def named_codes(doc: dict, message_type: str, codes: Iterable[str]) -> list[str]:
    """The caller's ``codes`` the document names in its sender fields, in field order."""
    mine = frozenset(codes)
    found = []
    for f in SENDER_FIELDS.get(message_type, ()):
        code = _text(doc.get(f))
        if code and code in mine and code not in found:
            found.append(code)
    return found


def stamp(doc: dict, submitter: str | None = None) -> dict:
    """``doc`` with its submitter set: ``submitter`` or, by default, its own sender field."""
    doc[SUBMITTER] = submitter or own_sender(doc) or None
    return doc
