"""The standard's field rules per entity, compiled once from ``fields.json``.

``fields.json`` lists each entity's fields in the XSD's sequence order, so the writer can
emit elements in the order the schema demands by walking ``EntitySpec.fields``. Both the
reader and the writer check text through :meth:`EntitySpec.check_texts`, which is the one
place that knows what "valid" means without the XSD.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from services.common.avro import MAX_UNITS
from services.common.documents import NAMESPACE
from services.common.money import SCALE, AmountError, parse_amount

FIELDS_FILE = Path(__file__).with_name("fields.json")

# Never echoed in an error message: these name, identify or locate a person.
PII_FIELDS = frozenset({
    "buyerName", "buyerIdNumber", "buyerTelephone", "payerName", "payerIdNumber", "telephone",
    "consignee", "consigneeTelephone", "consigneeAddress",
})

_XS_INT_MIN, _XS_INT_MAX = -(2**31), 2**31 - 1
# The standard allows 19 digits (up to 10^14); sandan's wire format (a scale-5 long) carries a
# little less. A larger amount is refused here, with its field, not when it is published.
_WIRE_MAX = Decimal(MAX_UNITS).scaleb(-SCALE)
_DECIMAL_FORM = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_INT_FORM = re.compile(r"[+-]?\d+")
_SHOWN_CHARS = 40


class FieldProblem(ValueError):
    """One field's text breaks the standard; the message names the problem, never a PII value."""


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

    def convert(self, text: str) -> str | int | Decimal:
        """Typed value of already-trimmed text, or FieldProblem."""
        if self.kind == "decimal":
            return self._decimal(text)
        if self.kind == "int":
            return self._int(text)
        self._check_length(text)
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
        fraction = 5 if self.fraction_digits is None else self.fraction_digits
        total = 19 if self.total_digits is None else self.total_digits
        try:
            value = parse_amount(text, fraction_digits=fraction, total_digits=total)
        except AmountError:
            value = None
        if value is not None:
            if abs(value) > _WIRE_MAX:
                raise FieldProblem(f"{shown(text)} is out of range: at most ±{_WIRE_MAX}")
            return value
        # Re-derive the reason here so the message quotes a shortened value, whatever its size.
        if not _DECIMAL_FORM.fullmatch(text):
            raise FieldProblem(f"{shown(text)} is not a decimal number") from None
        intpart, _, frac = text.lstrip("+-").partition(".")
        if len(frac) > fraction:
            raise FieldProblem(f"{shown(text)} has {len(frac)} fraction digits, at most {fraction} allowed") from None
        digits = len(intpart.lstrip("0")) + len(frac)
        raise FieldProblem(f"{shown(text)} has {digits} digits, at most {total} allowed") from None

    def _int(self, text: str) -> int:
        if not _INT_FORM.fullmatch(text):
            raise FieldProblem(f"{shown(text)} is not a whole number")
        digits = len(text.lstrip("+-").lstrip("0"))
        if self.total_digits is not None and digits > self.total_digits:
            raise FieldProblem(f"{shown(text)} has {digits} digits, at most {self.total_digits} allowed")
        value = int(text)
        if not _XS_INT_MIN <= value <= _XS_INT_MAX:
            raise FieldProblem(f"{shown(text)} is outside the range of xs:int")
        return value


def _chars(n: int) -> str:
    return f"{n} character" if n == 1 else f"{n} characters"


@dataclass(frozen=True)
class EntitySpec:
    name: str
    fields: tuple[FieldSpec, ...]
    by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)
    by_tag: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        # Clark-notation tags let the reader look a child up without splitting its tag.
        object.__setattr__(self, "by_tag", {f"{{{NAMESPACE}}}{f.name}": f for f in self.fields})

    def check_texts(self, texts: dict[str, str], label: str | None = None) -> tuple[dict, list[str]]:
        """Typed values in the standard's order and the problems found, one string each.

        Text must already be trimmed. An empty optional element counts as absent (senders
        often write ``<ceb:note/>``); an empty required one is checked like any other text.
        """
        label = label or self.name
        values: dict = {}
        errors: list[str] = []
        for spec in self.fields:
            text = texts.get(spec.name)
            if text is None or (text == "" and not spec.required):
                if spec.required:
                    errors.append(f"field {label}/{spec.name}: required but missing")
                continue
            try:
                values[spec.name] = spec.convert(text)
            except FieldProblem as exc:
                errors.append(f"field {label}/{spec.name}: {exc}")
        return values, errors


def _field_spec(raw: dict) -> FieldSpec:
    return FieldSpec(
        name=raw["name"], kind=raw["type"], required=raw["required"], length=raw.get("length"),
        min_length=raw.get("minLength"), max_length=raw.get("maxLength"),
        fraction_digits=raw.get("fractionDigits"), total_digits=raw.get("totalDigits"),
    )


def _load() -> dict[str, EntitySpec]:
    table = json.loads(FIELDS_FILE.read_text(encoding="utf-8"))
    return {name: EntitySpec(name, tuple(_field_spec(f) for f in fields)) for name, fields in table.items()}


ENTITIES: dict[str, EntitySpec] = _load()

# The root element's attributes, as the XSD declares them on every CEBnnnMessage.
ROOT_ATTRIBUTES = EntitySpec("@", (
    FieldSpec("guid", "string", True, length=36),
    FieldSpec("version", "string", True, min_length=1, max_length=10),
))


def entity(name: str) -> EntitySpec:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"no entity {name!r} in {FIELDS_FILE.name}") from None
