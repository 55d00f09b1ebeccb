"""Avro wire format for every Kafka record sandan writes, in one of two framings.

``confluent`` (the ecosystem's standard, readable by any Confluent-compatible deserializer):
``0x00, schema id (4 bytes, big-endian), avro-body``. The id is the one a Confluent-compatible
schema registry gives the writer's schema, registered under ``<topic>-value`` for every topic
that carries the record (TopicNameStrategy; records no topic declares, such as changelog
tables, under their full name). Ids are looked up once per schema and process and cached;
a reader fetches an id it has not seen from the registry, once, and reads the record with the
writer's schema resolved to the current one.

``sandan`` (the framing before the registry, and the one used without a registry):
``0xA5, len(tag), tag, avro-body`` where tag is ``b"<schema full name>/<version>"``.

Either way the body is Avro's binary encoding, written and read by code compiled from each
schema (``services.common.avro_compiled``; ``SANDAN_AVRO_CODEC=fastavro`` uses fastavro's
interpreter instead, which also reads every record written with an earlier schema version: the
bytes are the same), and ``decode`` reads both framings
(it picks by the first byte), so records already on the topics stay readable. When a schema
gains fields its ``sandan.version`` goes up and the version before is kept in
``schemas/avro/superseded/<file>.v<N>.avsc``; records written with it are read with Avro
schema resolution into the current shape (new fields get their defaults). Only the current
version is ever written.

Amounts are ``Decimal`` in the domain and ``long`` with a fixed scale of 5 on the wire
(fields marked ``"sandan.scale": 5`` in the .avsc, a property the registered schema keeps);
the conversion is exact both ways and refuses a value with more than 5 fraction digits.
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
from fastavro.schema import to_parsing_canonical_form

from services.common import avro_compiled
from services.common.money import SCALE, AmountError
from services.common.schema_registry import RegistryClient, RegistryError

MAGIC = 0xA5
CONFLUENT_MAGIC = 0x00
FORMATS = ("sandan", "confluent")
# A scale-5 long holds up to 92,233,720,368,547.75807 CNY: below the standard's 19 digits
# (10^14), far above any real declaration. Larger amounts are refused, never wrapped.
MAX_UNITS = 2**63 - 1
SCHEMA_DIR = Path(os.environ.get("SANDAN_SCHEMA_DIR", Path(__file__).resolve().parents[2] / "schemas" / "avro"))
_FACTOR = 10**SCALE
SUPERSEDED = "superseded"  # folder of SCHEMA_DIR holding earlier versions, read but never written
CODECS = ("compiled", "fastavro")
_ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)
_DECODE_ERRORS = (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError)


class WireError(ValueError):
    """Bytes that are not a sandan Avro record (bad header, unknown schema, corrupt body)."""


def expanded(raw: dict, raw_named: dict) -> dict:
    """``raw`` made self-contained for a registry: each named type it refers to defined inline
    at its first use (as Avro requires), later uses left as names."""
    defined: set[str] = {f"{raw['namespace']}.{raw['name']}"}

    def walk(node):
        if isinstance(node, str):
            if node in raw_named and node not in defined:
                defined.add(node)
                return walk(raw_named[node])
            return node
        if isinstance(node, list):
            return [walk(branch) for branch in node]
        if isinstance(node, dict):
            out = dict(node)
            if "fields" in node:
                out["fields"] = [dict(f, type=walk(f["type"])) for f in node["fields"]]
            for key in ("items", "values"):
                if key in node:
                    out[key] = walk(node[key])
            if node.get("type") not in ("record", "enum", "fixed", "array", "map", None) and not isinstance(node.get("type"), str):
                out["type"] = walk(node["type"])
            return out
        return node

    return walk(raw)


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
    if units < -MAX_UNITS:  # -2**63, the one long outside the range: it could not be written back
        raise AmountError(f"{_UNIT * units} is out of the wire format's range (±{Decimal(MAX_UNITS).scaleb(-SCALE)})")
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
    registered: str = ""        # the self-contained schema JSON a registry gets
    out: bytes | None = None    # the header encode writes: sandan's tag, or 0x00 + registry id once known
    # compiled from the schema, amounts and document shape included (to_wire and from_wire
    # are for fastavro's path); None: fastavro's
    write: avro_compiled.Encoder | None = None
    read: avro_compiled.Decoder | None = None   # likewise, for records of this very schema


@dataclass
class AvroCodec:
    """Encodes and decodes every record type in ``schemas/avro`` (each schema parsed once).

    ``wire_format`` picks what ``encode`` writes (``sandan`` or ``confluent``; the latter needs
    ``registry``); ``decode`` reads both. ``subjects`` gives the registry subjects a record name
    is registered under (services/common/topics.py's ``<topic>-value`` for the codec()).
    """

    schema_dir: Path = SCHEMA_DIR
    wire_format: str = "sandan"
    registry: RegistryClient | None = None
    subjects: Callable[[str], list[str]] = field(default=lambda name: [name])
    codec: str = "compiled"     # or "fastavro"; codec() takes it from SANDAN_AVRO_CODEC
    _by_name: dict[str, _Entry] = field(default_factory=dict)
    _by_tag: dict[bytes, _Entry] = field(default_factory=dict)
    _by_id: dict[int, _Entry] = field(default_factory=dict)
    _superseded: dict[str, list[_Entry]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.wire_format not in FORMATS:
            raise WireError(f"wire format {self.wire_format!r} is not one of {', '.join(FORMATS)}")
        if self.codec not in CODECS:
            raise WireError(f"SANDAN_AVRO_CODEC={self.codec!r} is not one of {', '.join(CODECS)}")
        if self.wire_format == "confluent" and self.registry is None:
            raise WireError("the confluent wire format needs a schema registry (SANDAN_SCHEMA_REGISTRY_URL)")
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
            whole = expanded(raw, raw_named)
            entry = _Entry(full, version, raw.get("sandan.message"), parsed,
                           bytes([MAGIC, len(tag)]) + tag,
                           _converters(raw, raw_named, _to_units), _converters(raw, raw_named, _from_units, True),
                           registered=json.dumps(whole, separators=(",", ":")))
            if self.codec == "compiled":
                try:
                    entry.write, entry.read = avro_compiled.compile_schema(whole, _to_units, _from_units)
                except avro_compiled.Unsupported:
                    pass  # this schema stays with fastavro
            entry.out = entry.header if self.wire_format == "sandan" else None
            self._by_name[full] = entry
            self._by_name.setdefault(raw["name"], entry)
            self._by_tag[tag] = entry
        for path in sorted((self.schema_dir / SUPERSEDED).glob("*.avsc")):
            self._add_superseded(json.loads(path.read_text(encoding="utf-8")), raw_named, path)
        for versions in self._superseded.values():
            versions.sort(key=lambda e: e.version)

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
        others = {k: v for k, v in raw_named.items() if k != full}
        entry = _Entry(full, version, current.message, fastavro.parse_schema(raw, named_schemas=named),
                       bytes([MAGIC, len(tag)]) + tag, current.to_wire, current.from_wire, reader=current.parsed,
                       registered=json.dumps(expanded(raw, others), separators=(",", ":")))
        self._by_tag[tag] = entry
        self._superseded.setdefault(full, []).append(entry)

    def names(self) -> list[str]:
        return sorted({e.name for e in self._by_name.values()})

    def _entry(self, name: str) -> _Entry:
        entry = self._by_name.get(name)
        if entry is None:
            raise WireError(f"no Avro schema named {name!r}")
        return entry

    def register(self, name: str, subjects: list[str] | None = None) -> int:
        """Registers ``name`` under each of its subjects (BACKWARD, superseded versions first,
        oldest first, so every version is kept) and returns the id its records are written with.

        Raises schema_registry.RegistryUnavailable when the registry does not answer and WireError when it refuses a schema (e.g. an incompatible change).
        """
        entry = self._entry(name)
        if self.registry is None:
            raise WireError("no schema registry configured (SANDAN_SCHEMA_REGISTRY_URL)")
        ids = []
        for subject in subjects if subjects is not None else self.subjects(entry.name):
            try:
                self.registry.set_compatibility(subject, "BACKWARD")
                for old in self._superseded.get(entry.name, ()):
                    self._by_id.setdefault(self.registry.register(subject, old.registered), old)
                ids.append(self.registry.register(subject, entry.registered))
            except RegistryError as exc:
                raise WireError(f"{entry.name} under subject {subject}: {exc}") from None
            self._by_id[ids[-1]] = entry
        if not ids:
            raise WireError(f"{entry.name}: no subject to register it under")
        if self.wire_format == "confluent" and entry.out is None:
            entry.out = bytes([CONFLUENT_MAGIC]) + ids[0].to_bytes(4, "big")
        return ids[0]

    def encode(self, name: str, record: dict) -> bytes:
        entry = self._by_name.get(name)
        if entry is None:
            raise WireError(f"no Avro schema named {name!r}")
        header = entry.out
        if header is None:  # confluent, first record of this schema in this process
            self.register(name)
            header = entry.out
        try:
            if entry.write is not None:
                out = bytearray(header)
                entry.write(out, record)
                return bytes(out)
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, entry.parsed, entry.to_wire(record))
            return buf.getvalue()
        except _ENCODE_ERRORS as exc:
            raise WireError(f"{name}: record does not fit the schema: {exc}") from exc

    def _by_schema_id(self, schema_id: int) -> _Entry:
        """The entry for a registry id not seen yet: the writer's schema from the registry, read
        into the current schema of the same name."""
        if self.registry is None:
            raise WireError(f"a Confluent-framed record (schema id {schema_id}) and no schema registry "
                            "configured (SANDAN_SCHEMA_REGISTRY_URL)")
        try:
            text = self.registry.schema(schema_id)
        except RegistryError as exc:
            raise WireError(f"schema id {schema_id}: {exc}") from None
        try:
            raw = json.loads(text)
            full = raw["name"] if "." in raw["name"] else f"{raw.get('namespace', '')}.{raw['name']}"
            writer = fastavro.parse_schema(raw, named_schemas={})
        except (ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
            raise WireError(f"schema id {schema_id} is not an Avro record schema: {exc}") from None
        current = self._by_name.get(full)
        if current is None:
            raise WireError(f"schema id {schema_id} is {full!r}, which sandan has no schema for")
        same = to_parsing_canonical_form(writer) == to_parsing_canonical_form(
            fastavro.parse_schema(json.loads(current.registered), named_schemas={}))
        entry = current if same else _Entry(full, 0, current.message, writer, b"", current.to_wire,
                                            current.from_wire, reader=current.parsed)
        self._by_id[schema_id] = entry
        return entry

    def decode(self, data: bytes) -> tuple[str, dict]:
        """Returns (schema full name, record); CEB documents get their ``"message"`` back."""
        if data[:1] == b"\x00" and len(data) >= 5:
            schema_id = int.from_bytes(data[1:5], "big")
            entry = self._by_id.get(schema_id) or self._by_schema_id(schema_id)
            start = 5
        elif len(data) >= 2 and data[0] == MAGIC and len(data) >= 2 + data[1]:
            tag = bytes(data[2:2 + data[1]])
            entry = self._by_tag.get(tag)
            if entry is None:
                raise WireError(f"unknown schema {tag.decode(errors='replace')!r}")
            start = 2 + data[1]
        else:
            raise WireError("not a sandan Avro record (bad header)")
        try:
            if entry.read is not None and entry.reader is None:
                return entry.name, entry.read(data if type(data) is bytes else bytes(data), start)[0]
            # The body is read in place (a BytesIO over bytes shares them) rather than sliced off.
            body = io.BytesIO(data)
            body.seek(start)
            record = fastavro.schemaless_reader(body, entry.parsed, entry.reader)
        except AmountError as exc:  # a long beyond the amounts' range, read by the compiled reader
            raise WireError(f"{entry.name}: {exc}") from exc
        except _DECODE_ERRORS as exc:
            raise WireError(f"{entry.name}: corrupt Avro body: {exc}") from exc
        try:
            return entry.name, entry.from_wire(record)
        except AmountError as exc:
            raise WireError(f"{entry.name}: {exc}") from exc


# Record names by document kind (see services.common.documents).
SCHEMA_OF_KIND = {
    "order": "sandan.ceb.Order", "payment": "sandan.ceb.Payment", "logistics": "sandan.ceb.Logistics",
    "logistics_status": "sandan.ceb.LogisticsStatus", "inventory": "sandan.ceb.Inventory",
    "cancel": "sandan.ceb.InvtCancel", "refund": "sandan.ceb.InvtRefund", "delivery": "sandan.ceb.Delivery",
}

_shared: AvroCodec | None = None


def wire_format() -> str:
    """SANDAN_WIRE_FORMAT, with ``auto``: confluent when a registry URL is set, sandan otherwise."""
    from services.common import config

    chosen = config.get("SANDAN_WIRE_FORMAT").strip().lower()
    if chosen == "auto":
        return "confluent" if config.get("SANDAN_SCHEMA_REGISTRY_URL").strip() else "sandan"
    if chosen not in FORMATS:
        raise SystemExit(f"setting SANDAN_WIRE_FORMAT={chosen!r} is not one of auto, {', '.join(FORMATS)}")
    return chosen


def topic_subjects(name: str) -> list[str]:
    """TopicNameStrategy: ``<topic>-value`` for each declared topic carrying ``name``; a record
    no topic declares (a changelog table's) under its own full name."""
    from services.common import topics

    return [f"{t.full_name}-value" for t in topics.TOPICS if t.value == name] or [name]


def codec() -> AvroCodec:
    """The process-wide codec (schemas parsed once), in the configured wire format."""
    global _shared
    if _shared is None:
        from services.common import config

        url = config.get("SANDAN_SCHEMA_REGISTRY_URL").strip()
        chosen = wire_format()
        if chosen == "confluent" and not url:
            raise SystemExit("setting SANDAN_WIRE_FORMAT=confluent needs SANDAN_SCHEMA_REGISTRY_URL")
        _shared = AvroCodec(wire_format=chosen, registry=RegistryClient(url) if url else None,
                            subjects=topic_subjects, codec=config.get("SANDAN_AVRO_CODEC").strip().lower())
    return _shared
