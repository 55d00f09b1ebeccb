"""Errors of the CEB XML codec.

Messages name the source, the message code, the document (guid and business key) and the
field with its problem, e.g.::

    orders.xml: CEB311 document guid=4CDE… orderNo=O1: field OrderHead/acturalPaid: '12.3x' is not a decimal number

They never quote personal data (see ``schema.PII_FIELDS``): string problems are reported
by length only, and XSD messages about personal fields are redacted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services.common.codes import FORMAT_CHECK

# Business keys tried in turn to identify a document in messages (none of them personal data).
_KEYS = ("orderNo", "invtNo", "logisticsNo", "taxNo", "payTransactionId", "copNo")

# A document's problems are refused APP_TIME or FIXED_VALUES where the domain names them
# (DOMAIN §2a), FORMAT_CHECK (customs' CEB900 format check) for every other rule.


def refusal_code(errors: list) -> str:
    """The code a refused document's receipt carries: its first problem's named code, else
    FORMAT_CHECK (field problems are ``schema.Problem`` strings with a ``code``; others plain)."""
    for error in errors:
        code = getattr(error, "code", FORMAT_CHECK)
        if code != FORMAT_CHECK:
            return code
    return FORMAT_CHECK


class CebError(ValueError):
    """A CEB message (or one of its documents) that cannot be accepted.

    ``detail`` is the message without the source, for callers that print the source
    themselves; ``errors`` lists every problem found in the offending document.
    """

    def __init__(self, source: str, problem: str, *, code: str | None = None, document: dict | None = None,
                 index: int | None = None, errors: list[str] | None = None) -> None:
        self.source = source
        self.code = code
        self.index = index
        self.guid = (document or {}).get("guid")
        self.document = describe(document) if document is not None else None
        self.errors = list(errors) if errors else [problem]
        self.refusal_code = refusal_code(self.errors)
        parts = [p for p in (code, f"document {self.document}" if self.document else None) if p]
        self.detail = f"{' '.join(parts)}: {problem}" if parts else problem
        super().__init__(f"{source}: {self.detail}")


def describe(document: dict) -> str:
    """``guid=… orderNo=…`` from whatever text or value the document has for them."""
    parts = [f"guid={document.get('guid') or '?'}"]
    for key in _KEYS:
        if document.get(key):
            parts.append(f"{key}={document[key]}")
            break
    return " ".join(parts)


@dataclass
class RejectedDocument:
    """A business document the lenient reader set aside, with what was read of it.

    ``index`` is its 0-based position among the message's documents; ``raw`` holds the
    trimmed text of every known field that was present (lines under ``"lines"``), so the
    document can go to a dead-letter topic as received. Field problems in ``errors`` are
    ``schema.Problem`` strings carrying their ``code`` and ``field``.
    """
    index: int
    guid: str | None
    orderNo: str | None
    errors: list[str]
    raw: dict = field(default_factory=dict)

    @property
    def code(self) -> str:
        """APP_TIME, FIXED_VALUES or FORMAT_CHECK: what its receipt names (see refusal_code)."""
        return refusal_code(self.errors)
