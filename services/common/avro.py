"""Avro wire format for every Kafka record sandan writes.

A record on the wire is ``0xA5, len(tag), tag, avro-body`` where tag is
``b"<schema full name>/<version>"`` and the body is fastavro's schemaless encoding. The
tag lets a reader pick the schema a record was written with, so schemas can evolve
without a registry service: when a schema gains fields its ``sandan.version`` goes up and
the version before is kept in ``schemas/avro/superseded/<file>.v<N>.avsc``; records tagged
with it are read with Avro schema resolution into the current shape (new fields get their
defaults). Only the current version is ever written.

Amounts are ``Decimal`` in the domain and ``long`` with a fixed scale of 5 on the wire
(fields marked ``"sandan.scale": 5`` in the .avsc); the conversion is exact both ways and
refuses a value with more than 5 fraction digits.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable

import fastavro

from services.common.money import SCALE, AmountError

MAGIC = 0xA5
# A scale-5 long holds up to 92,233,720,368,547.75807 CNY: below the standard's 19 digits
# (10^14), far above any real declaration. Larger amounts are refused, never wrapped.
MAX_UNITS = 2**63 - 1
SCHEMA_DIR = Path(os.environ.get("SANDAN_SCHEMA_DIR", Path(__file__).resolve().parents[2] / "schemas" / "avro"))
_FACTOR = 10**SCALE
SUPERSEDED = "superseded"  # folder of SCHEMA_DIR holding earlier versions, read but never written


class WireError(ValueError):
    """Bytes that are not a sandan Avro record (bad header, unknown schema, corrupt body)."""


def _to_units(value: Decimal) -> int:
    if type(value) is int:
        return value * _FACTOR
    scaled = value.scaleb(SCALE)
    units = int(scaled)
    if units != scaled:
        raise AmountError(f"{value} has more than {SCALE} fraction digits")
    if not -MAX_UNITS <= units <= MAX_UNITS:
        raise AmountError(f"{value} is out of the wire format's range (±{Decimal(MAX_UNITS).scaleb(-SCALE)})")
    return units


_UNIT = Decimal(1).scaleb(-SCALE)


def _from_units(units: int) -> Decimal:
    # The same value and exponent as Decimal(units).scaleb(-SCALE) (0.00100 stays 0.00100), at
    # a third of the cost: a wire long has at most 19 digits, so the product is exact.
    return _UNIT * units


Converter = Callable[[dict], dict]


def _record_schema(avro_type, named: dict) -> dict | None:
    """The record schema behind a field type (plain, named reference or nullable union)."""
    if isinstance(avro_type, list):
        for branch in avro_type:
            found = _record_schema(branch, named)
            if found:
                return found
        return None
    if isinstance(avro_type, str):
        return named.get(avro_type)
    if isinstance(avro_type, dict) and avro_type.get("type") == "record":
        return avro_type
    return None


def _array_items(avro_type, named: dict) -> dict | None:
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        return _record_schema(avro_type["items"], named)
    return None


def _union_record_name(avro_type, named: dict) -> str | None:
    """The full name of the named record a nullable union field refers to, if it is one."""
    if isinstance(avro_type, list):
        refs = [b for b in avro_type if isinstance(b, str) and b in named]
        if len(refs) == 1:
            return refs[0]
    return None


def _dependencies(avro_type, raw_named: dict, found: list | None = None) -> list[str]:
    """Full names of the already parsed schemas ``avro_type`` refers to, each after its own."""
    found = [] if found is None else found
    if isinstance(avro_type, str):
        if avro_type in raw_named and avro_type not in found:
            _dependencies(raw_named[avro_type], raw_named, found)
            found.append(avro_type)
    elif isinstance(avro_type, list):
        for branch in avro_type:
            _dependencies(branch, raw_named, found)
    elif isinstance(avro_type, dict):
        for f in avro_type.get("fields", ()):
            _dependencies(f["type"], raw_named, found)
        for key in ("items", "values"):
            if key in avro_type:
                _dependencies(avro_type[key], raw_named, found)
    return found


def _converters(schema: dict, named: dict, amount: Callable, restore: bool = False, in_ceb: bool = False) -> Converter:
    """Build a function that copies a record and converts its scaled fields with ``amount``.

    Built once per schema, so the per-record work is a dict copy and a few lookups. With
    ``restore`` (the decoding direction) a CEB document, wherever it is nested, gets the
    document shape back: no keys for absent optional fields, and its ``"message"``.

    In the encoding direction a record in a union (Verdict's inventory) goes to fastavro in
    its tuple notation, ``(record name, record)``: without it fastavro picks the branch by
    validating the whole record against each branch first, a third of a Verdict's encoding
    time. The bytes are the same; a record that does not fit is still refused, by the writer.
    """
    message = schema.get("sandan.message")
    ceb = in_ceb or bool(message)
    scaled = [f["name"] for f in schema["fields"] if f.get("sandan.scale")]
    nested: list[tuple[str, Converter]] = []
    arrays: list[tuple[str, Converter]] = []
    tagged: list[tuple[str, Converter, str]] = []
    for f in schema["fields"]:
        items = _array_items(f["type"], named)
        if items is not None:
            inner = _converters(items, named, amount, restore, ceb)
            if inner is not _copy:
                arrays.append((f["name"], inner))
            continue
        sub = _record_schema(f["type"], named)
        if sub is not None:
            inner = _converters(sub, named, amount, restore)
            branch = None if restore else _union_record_name(f["type"], named)
            if branch is not None:
                tagged.append((f["name"], inner, branch))
            elif inner is not _copy:
                nested.append((f["name"], inner))
    shape = restore and ceb
    if not (scaled or nested or arrays or tagged or shape):
        return _copy

    def convert(rec: dict) -> dict:
        out = {k: v for k, v in rec.items() if v is not None} if shape else dict(rec)
        for name in scaled:
            value = out.get(name)
            if value is not None:
                out[name] = amount(value)
        for name, inner in nested:
            value = out.get(name)
            if value is not None:
                out[name] = inner(value)
        for name, inner in arrays:
            value = out.get(name)
            if value:
                out[name] = [inner(item) for item in value]
        for name, inner, branch in tagged:
            value = out.get(name)
            if value is not None:
                out[name] = (branch, inner(value))
        if shape and message:
            out["message"] = message
        return out

    return convert


def _copy(rec: dict) -> dict:
    return rec


@dataclass
class _Entry:
    name: str
    version: int
    message: str | None
    parsed: dict
    header: bytes
    to_wire: Converter
    from_wire: Converter
    reader: dict | None = None  # the current schema, for a superseded version's records


@dataclass
class AvroCodec:
    """Encodes and decodes every record type in ``schemas/avro`` (each schema parsed once)."""

    schema_dir: Path = SCHEMA_DIR
    _by_name: dict[str, _Entry] = field(default_factory=dict)
    _by_tag: dict[bytes, _Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raws = [json.loads(p.read_text(encoding="utf-8")) for p in self.schema_dir.glob("*.avsc")]
        # Named types other schemas refer to are parsed first: Failure, then the CEB documents.
        raws.sort(key=lambda r: (r["name"] != "Failure", r["namespace"] != "sandan.ceb", r["name"]))
        raw_named: dict = {}
        for raw in raws:
            full = f"{raw['namespace']}.{raw['name']}"
            # Each schema gets named types of its own, only those it refers to: fastavro copies
            # a parsed schema's named types into a fresh dict on every read and write, and
            # with one dict shared by all schemas that was ~40 entries per record (~1 µs).
            named: dict = {}
            for dep in _dependencies(raw, raw_named):
                fastavro.parse_schema(raw_named[dep], named_schemas=named)
            parsed = fastavro.parse_schema(raw, named_schemas=named)
            raw_named[full] = raw
            version = int(raw.get("sandan.version", 1))
            tag = f"{full}/{version}".encode()
            entry = _Entry(full, version, raw.get("sandan.message"), parsed,
                           bytes([MAGIC, len(tag)]) + tag,
                           _converters(raw, raw_named, _to_units), _converters(raw, raw_named, _from_units, True))
            self._by_name[full] = entry
            self._by_name.setdefault(raw["name"], entry)
            self._by_tag[tag] = entry
        for path in sorted((self.schema_dir / SUPERSEDED).glob("*.avsc")):
            self._add_superseded(json.loads(path.read_text(encoding="utf-8")), raw_named, path)

    def _add_superseded(self, raw: dict, raw_named: dict, path: Path) -> None:
        full = f"{raw['namespace']}.{raw['name']}"
        current = self._by_name.get(full)
        version = int(raw.get("sandan.version", 1))
        if current is None or version >= current.version:
            raise WireError(f"{path}: a superseded schema needs a current {full} of a higher version")
        named: dict = {}
        for dep in _dependencies(raw, raw_named):
            if dep != full:
                fastavro.parse_schema(raw_named[dep], named_schemas=named)
        tag = f"{full}/{version}".encode()
        self._by_tag[tag] = _Entry(full, version, current.message, fastavro.parse_schema(raw, named_schemas=named),
                                   bytes([MAGIC, len(tag)]) + tag, current.to_wire, current.from_wire,
                                   reader=current.parsed)

    def names(self) -> list[str]:
        return sorted({e.name for e in self._by_name.values()})

    def encode(self, name: str, record: dict) -> bytes:
        entry = self._by_name.get(name)
        if entry is None:
            raise WireError(f"no Avro schema named {name!r}")
        buf = io.BytesIO()
        buf.write(entry.header)
        try:
            fastavro.schemaless_writer(buf, entry.parsed, entry.to_wire(record))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise WireError(f"{name}: record does not fit the schema: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict]:
        """Returns (schema full name, record); CEB documents get their ``"message"`` back."""
        if len(data) < 2 or data[0] != MAGIC or len(data) < 2 + data[1]:
            raise WireError("not a sandan Avro record (bad header)")
        tag = bytes(data[2:2 + data[1]])
        entry = self._by_tag.get(tag)
        if entry is None:
            raise WireError(f"unknown schema {tag.decode(errors='replace')!r}")
        try:
            # The body is read in place (a BytesIO over bytes shares them) rather than sliced off.
            body = io.BytesIO(data)
            body.seek(2 + data[1])
            record = fastavro.schemaless_reader(body, entry.parsed, entry.reader)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError) as exc:
            raise WireError(f"{entry.name}: corrupt Avro body: {exc}") from exc
        return entry.name, entry.from_wire(record)


# Record names by document kind (see services.common.documents).
SCHEMA_OF_KIND = {
    "order": "sandan.ceb.Order", "payment": "sandan.ceb.Payment", "logistics": "sandan.ceb.Logistics",
    "logistics_status": "sandan.ceb.LogisticsStatus", "inventory": "sandan.ceb.Inventory",
    "cancel": "sandan.ceb.InvtCancel", "refund": "sandan.ceb.InvtRefund", "delivery": "sandan.ceb.Delivery",
}

_shared: AvroCodec | None = None


def codec() -> AvroCodec:
    """The process-wide codec (schemas parsed once)."""
    global _shared
    if _shared is None:
        _shared = AvroCodec()
    return _shared
