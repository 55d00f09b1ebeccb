"""The standard's field rules per entity, compiled once from ``fields.json``.

``fields.json`` lists each entity's fields in the XSD's sequence order, so the writer can
emit elements in the order the schema demands by walking ``EntitySpec.fields``. Both the
reader and the writer check text through :meth:`EntitySpec.check_texts`, which is the one
place that knows what "valid" means without the XSD: the XSD's lengths and digits, the time
formats and upper-case guids the standard's field table names, and what DOMAIN §2a decides
(appType 1/2/3, appStatus 2, unsigned amounts).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from services.common.avro import MAX_UNITS
from services.common.codes import APP_TIME, FIXED_VALUES, FORMAT_CHECK
from services.common.documents import NAMESPACE
from services.common.money import SCALE
from services.common.timefields import DATE_FORMAT, STAMP_FORMAT, TIME_FORMAT, is_valid

FIELDS_FILE = Path(__file__).with_name("fields.json")

# Never echoed in an error message: these name, identify or locate a person.
PII_FIELDS = frozenset({
    "buyerName", "buyerIdNumber", "buyerTelephone", "payerName", "payerIdNumber", "telephone",
    "consignee", "consigneeTelephone", "consigneeAddress",
})

# DOMAIN §2a decisions on declaration heads: the values each field may hold, and their meaning.
ALLOWED_VALUES = {
    "appType": ({"1", "2", "3"}, "1 (new), 2 (change) or 3 (delete)"),
    "appStatus": ({"2"}, "2 (declared): a stored document (1) has not been declared"),
}
_TIME_FIELD_CODES = {"appTime": APP_TIME}
_FORM_TEXT = {
    TIME_FORMAT: "a real China time YYYYMMDDhhmmss (14 digits: a calendar date, hour 00-23, minute and "
                 "second 00-59)",
    STAMP_FORMAT: "a real China time YYYYMMDDhhmmssSSS (17 digits: a calendar date, hour 00-23, minute and "
                  "second 00-59, milliseconds)",
    DATE_FORMAT: "a real date YYYYMMDD (8 digits)",
}

_XS_INT_MIN, _XS_INT_MAX = -(2**31), 2**31 - 1
# The standard allows 19 digits (up to 10^14); sandan's wire format (a scale-5 long) carries a
# little less. A larger amount is refused here, with its field, not when it is published.
_WIRE_MAX = Decimal(MAX_UNITS).scaleb(-SCALE)
# Integer digits that can never exceed _WIRE_MAX (14 integer digits can), so the common case
# skips the Decimal comparison.
_ALWAYS_IN_RANGE = len(str(MAX_UNITS)) - SCALE - 1
# The whole numbers of the documents (gnum, packNo) are counts: ASCII digits, no sign (DOMAIN
# §2a), although xs:int would take "+1" (and Python's \d any Unicode digit).
_INT_FORM = re.compile(r"[0-9]+")
_SHOWN_CHARS = 40


class FieldProblem(ValueError):
    """One field's text breaks the standard; the message names the problem, never a PII value."""

    def __init__(self, message: str, code: str = FORMAT_CHECK) -> None:
        super().__init__(message)
        self.code = code


class Problem(str):
    """One problem of a document as its text (``field OrderHead/appTime: APP_TIME: …``), which
    is what logs, dead letters and receipts carry, with its refusal ``code`` and ``field``
    (``OrderHead/appTime``; empty when the problem is not one field's) for callers that
    report them apart."""
    __slots__ = ("code", "field")

    def __new__(cls, text: str, code: str = FORMAT_CHECK, field: str = "") -> "Problem":
        problem = super().__new__(cls, text)
        problem.code = code
        problem.field = field
        return problem


def field_problem(label: str, name: str, problem: str, code: str = FORMAT_CHECK) -> Problem:
    """``field label/name: problem``, with the code in the text where DOMAIN §2a names one."""
    where = f"{label}/{name}"
    text = f"field {where}: {problem}" if code == FORMAT_CHECK else f"field {where}: {code}: {problem}"
    return Problem(text, code, where)


def shown(text: str) -> str:
    """A value quoted for an error message, cut short so junk input cannot flood a log."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: str  # "string" | "decimal" | "int"
    required: bool
    length: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    fraction_digits: int | None = None
    total_digits: int | None = None
    time_format: str | None = None  # timefields.TIME_FORMAT ...: the text must be a real instant
    upper_case: bool = False
    allowed: frozenset[str] | None = None
    allowed_text: str = ""

    def convert(self, text: str) -> str | int | Decimal:
        """Typed value of already-trimmed text, or FieldProblem."""
        if self.kind == "decimal":
            return self._decimal(text)
        if self.kind == "int":
            return self._int(text)
        if self.time_format is not None:
            if not is_valid(text, self.time_format):
                raise FieldProblem(f"{shown(text)} is not {_FORM_TEXT[self.time_format]}",
                                   _TIME_FIELD_CODES.get(self.name, FORMAT_CHECK))
            return text
        if self.allowed is not None:
            if text not in self.allowed:
                raise FieldProblem(f"{shown(text)} is not {self.allowed_text}", FIXED_VALUES)
            return text
        self._check_length(text)
        if self.upper_case and text.upper() != text:
            raise FieldProblem(f"{shown(text)} has lower-case letters; the standard writes it in upper case")
        return text

    def _check_length(self, text: str) -> None:
        n = len(text)
        if self.length is not None and n != self.length:
            raise FieldProblem(f"is {_chars(n)} long, exactly {self.length} required")
        if self.max_length is not None and n > self.max_length:
            raise FieldProblem(f"is {_chars(n)} long, at most {self.max_length} allowed")
        if self.min_length and n < self.min_length:
            actual = "is empty" if n == 0 else f"is {_chars(n)} long"
            raise FieldProblem(f"{actual}, at least {_chars(self.min_length)} required")

    def _decimal(self, text: str) -> Decimal:
        """Amounts, prices and quantities (DOMAIN §2a): unsigned plain decimals, ``digits[.digits]``
        (``.5`` and ``5.`` as xs:decimal allows them); trailing fraction zeros carry no digit."""
        intpart, dot, frac = text.partition(".")
        if not _plain_decimal(intpart, dot, frac, text):
            if text[:1] in "+-" and _plain_decimal(*text[1:].partition("."), text[1:]):
                raise FieldProblem(f"{shown(text)} has a sign: amounts, prices and quantities are plain "
                                   f"digits and never negative")
            raise FieldProblem(f"{shown(text)} is not a decimal number")
        fraction = 5 if self.fraction_digits is None else self.fraction_digits
        total = 19 if self.total_digits is None else self.total_digits
        significant = frac.rstrip("0")
        if len(significant) > fraction:
            raise FieldProblem(f"{shown(text)} has {len(significant)} fraction digits, at most {fraction} allowed")
        integer = intpart.lstrip("0")
        digits = len(integer) + len(significant)
        if digits > total:
            raise FieldProblem(f"{shown(text)} has {digits} digits, at most {total} allowed")
        # Zeros beyond the wire's scale say nothing: dropped, so the value has at most SCALE places.
        kept = max(SCALE, len(significant))
        value = Decimal(f"{intpart}.{frac[:kept]}" if len(frac) > kept else text)
        if len(integer) > _ALWAYS_IN_RANGE and value > _WIRE_MAX:
            raise FieldProblem(f"{shown(text)} is out of range: at most {_WIRE_MAX}")
        return value

    def _int(self, text: str) -> int:
        if not _INT_FORM.fullmatch(text):
            if text[:1] in "+-" and _INT_FORM.fullmatch(text[1:]):
                raise FieldProblem(f"{shown(text)} has a sign: counts are plain digits and never negative")
            raise FieldProblem(f"{shown(text)} is not a whole number")
        digits = len(text.lstrip("0"))
        if self.total_digits is not None and digits > self.total_digits:
            raise FieldProblem(f"{shown(text)} has {digits} digits, at most {self.total_digits} allowed")
        value = int(text)
        if not _XS_INT_MIN <= value <= _XS_INT_MAX:
            raise FieldProblem(f"{shown(text)} is outside the range of xs:int")
        return value


def _plain_decimal(intpart: str, dot: str, frac: str, text: str) -> bool:
    """``digits``, ``digits.``, ``digits.digits`` or ``.digits``, ASCII only (isdigit alone also
    takes full-width and other Unicode digits)."""
    return ((intpart.isdigit() or bool(dot and not intpart and frac)) and (not frac or frac.isdigit())
            and text.isascii())


def _chars(n: int) -> str:
    return f"{n} character" if n == 1 else f"{n} characters"


@dataclass(frozen=True)
class EntitySpec:
    name: str
    fields: tuple[FieldSpec, ...]
    by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)
    by_tag: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)
    # The fields DOMAIN §2a decides on: times, guids, appType/appStatus, amounts and counts.
    decision_fields: tuple[FieldSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        object.__setattr__(self, "decision_fields", tuple(
            f for f in self.fields
            if f.kind in ("decimal", "int") or f.time_format or f.upper_case or f.allowed is not None))
        # Clark-notation tags let the reader look a child up without splitting its tag.
        object.__setattr__(self, "by_tag", {f"{{{NAMESPACE}}}{f.name}": f for f in self.fields})

    def check_texts(self, texts: dict[str, str], label: str | None = None) -> tuple[dict, list[Problem]]:
        """Typed values in the standard's order and the problems found, one ``Problem`` each.

        Text must already be trimmed. An empty optional element counts as absent (senders
        often write ``<ceb:note/>``); an empty required one is checked like any other text.
        """
        label = label or self.name
        values: dict = {}
        errors: list[Problem] = []
        for spec in self.fields:
            text = texts.get(spec.name)
            if text is None or (text == "" and not spec.required):
                if spec.required:
                    errors.append(field_problem(label, spec.name, "required but missing"))
                continue
            try:
                values[spec.name] = spec.convert(text)
            except FieldProblem as exc:
                errors.append(field_problem(label, spec.name, str(exc), exc.code))
        return values, errors


def _field_spec(raw: dict) -> FieldSpec:
    allowed, allowed_text = ALLOWED_VALUES.get(raw["name"], (None, ""))
    return FieldSpec(
        name=raw["name"], kind=raw["type"], required=raw["required"], length=raw.get("length"),
        min_length=raw.get("minLength"), max_length=raw.get("maxLength"),
        fraction_digits=raw.get("fractionDigits"), total_digits=raw.get("totalDigits"),
        time_format=raw.get("format"), upper_case=raw.get("case") == "upper",
        allowed=frozenset(allowed) if allowed is not None else None, allowed_text=allowed_text,
    )


def _load() -> dict[str, EntitySpec]:
    table = json.loads(FIELDS_FILE.read_text(encoding="utf-8"))
    return {name: EntitySpec(name, tuple(_field_spec(f) for f in fields)) for name, fields in table.items()}


ENTITIES: dict[str, EntitySpec] = _load()

# The root element's attributes, as the XSD declares them on every CEBnnnMessage.
ROOT_ATTRIBUTES = EntitySpec("@", (
    FieldSpec("guid", "string", True, length=36, upper_case=True),
    FieldSpec("version", "string", True, min_length=1, max_length=10),
))


def entity(name: str) -> EntitySpec:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"no entity {name!r} in {FIELDS_FILE.name}") from None


def document_problems(document: dict, head: str, body: str | None = None, *,
                      decisions_only: bool = False) -> list[Problem]:
    """The field problems of a typed document (a decoded record: str, int, Decimal values) by
    the rules the reader applies to text, for records that reached Kafka without the reader.
    ``head``/``body``: its entities (``documents.MESSAGE_TYPES[code].head`` / ``.body``).
    ``decisions_only``: only times, guids, appType/appStatus and amounts (DOMAIN §2a), the
    fields the engine computes with, at about a third of the cost."""
    problems = _entity_problems(document, entity(head), head, decisions_only)
    if body is not None:
        lines = document.get("lines")
        if not isinstance(lines, list) or not lines:
            problems.append(Problem(f"{head}: at least one {body} required"))
            return problems
        spec = entity(body)
        for n, line in enumerate(lines, 1):
            label = f"{body}[{n}]"
            if not isinstance(line, dict):
                problems.append(Problem(f"{label}: is not a record", FORMAT_CHECK, label))
                continue
            problems.extend(_entity_problems(line, spec, label, decisions_only))
    return problems


def _entity_problems(values: dict, spec: EntitySpec, label: str, decisions_only: bool) -> list[Problem]:
    texts = {}
    fields = spec.decision_fields if decisions_only else spec.fields
    for field_spec in fields:
        value = values.get(field_spec.name)
        if value is None:
            continue
        if isinstance(value, Decimal):
            texts[field_spec.name] = format(value, "f") if value.is_finite() else "NaN"
        elif isinstance(value, int) and not isinstance(value, bool):
            texts[field_spec.name] = str(value)
        else:
            texts[field_spec.name] = value if isinstance(value, str) else repr(type(value).__name__)
    if not decisions_only:
        return spec.check_texts(texts, label)[1]
    problems = []
    for field_spec in fields:
        text = texts.get(field_spec.name)
        if text is not None:
            try:
                field_spec.convert(text)
            except FieldProblem as exc:
                problems.append(field_problem(label, field_spec.name, str(exc), exc.code))
    return problems
