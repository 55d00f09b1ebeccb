"""The Confluent wire format of services/common/avro.py against an in-memory registry.

The registry here keeps what a Confluent-compatible one keeps (subjects, versions in order,
compatibility per subject, one id per distinct schema) and counts the calls, so the tests can
tell that the registry is asked once per schema, never per record.
"""
from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro
import pytest

from services.common import topics
from services.common.avro import AvroCodec, WireError, codec, topic_subjects
from services.common.schema_registry import RegistryError, RegistryUnavailable
from services.tools.generator import generate

SETS = generate(5, fault_share="0", seed=7)


class MemoryRegistry:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.schemas: dict[int, str] = {}
        self.versions: dict[str, list[int]] = {}
        self.compatibility: dict[str, str] = {}
        self.calls = 0
        self.down = False

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("schema registry at memory:// did not answer: down")

    def set_compatibility(self, subject: str, level: str = "BACKWARD") -> None:
        self._call()
        self.compatibility[subject] = level

    def register(self, subject: str, schema: str) -> int:
        self._call()
        canonical = fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(json.loads(schema), named_schemas={}))
        schema_id = self.ids.setdefault(canonical, len(self.ids) + 1)
        self.schemas[schema_id] = schema
        if schema_id not in self.versions.setdefault(subject, []):
            self.versions[subject].append(schema_id)
        return schema_id

    def schema(self, schema_id: int) -> str:
        self._call()
        if schema_id not in self.schemas:
            raise RegistryError(404, 40403, "Schema not found")
        return self.schemas[schema_id]


def confluent(registry: MemoryRegistry | None = None) -> AvroCodec:
    return AvroCodec(wire_format="confluent", registry=registry or MemoryRegistry(), subjects=topic_subjects)


def test_records_carry_magic_byte_zero_and_the_registry_id_of_their_schema():
    registry = MemoryRegistry()
    wire = confluent(registry)
    data = wire.encode("sandan.ceb.Payment", SETS[0].payment)
    schema_id = int.from_bytes(data[1:5], "big")
    assert data[0] == 0
    assert json.loads(registry.schemas[schema_id])["name"] == "Payment"
    # Any Avro reader given the registered schema reads the body: nothing sandan-specific in it.
    body = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(json.loads(registry.schemas[schema_id])))
    assert body["amountPaid"] == int(SETS[0].payment["amountPaid"] * 100000)


def test_the_registry_is_asked_once_per_schema_not_per_record():
    registry = MemoryRegistry()
    wire = confluent(registry)
    wire.encode("sandan.ceb.Order", SETS[0].order)
    calls = registry.calls
    for s in SETS:
        wire.decode(wire.encode("sandan.ceb.Order", s.order))
    assert registry.calls == calls


@pytest.mark.parametrize("kind,name", [("order", "sandan.ceb.Order"), ("inventory", "sandan.ceb.Inventory")])
def test_documents_round_trip_unchanged(kind, name):
    wire = confluent()
    for s in SETS:
        doc = getattr(s, kind)
        assert wire.decode(wire.encode(name, doc)) == (name, doc)


def test_schemas_go_under_topic_value_subjects_with_backward_and_every_version_oldest_first():
    registry = MemoryRegistry()
    wire = confluent(registry)
    wire.register("sandan.ceb.Order")
    subject = topics.name("documents.order") + "-value"  # the full topic name, prefix included
    assert topic_subjects("sandan.ceb.Order") == [subject]
    assert registry.compatibility[subject] == "BACKWARD"
    versions = [json.loads(registry.schemas[i])["sandan.version"] for i in registry.versions[subject]]
    assert versions == sorted(versions) and versions[-1] == wire._by_name["sandan.ceb.Order"].version
    assert len(versions) == 2  # order.v1.avsc, then the current one


def test_a_record_no_topic_declares_goes_under_its_own_name():
    assert topic_subjects("sandan.MatchBucket") == ["sandan.MatchBucket"]


def test_registered_schemas_are_self_contained():
    registry = MemoryRegistry()
    wire = confluent(registry)
    schema_id = wire.register("sandan.Verdict")
    # Parsed on its own, with no other schema known: Inventory and Failure are defined inline.
    fastavro.parse_schema(json.loads(registry.schemas[schema_id]), named_schemas={})


def test_a_reader_fetches_an_unknown_id_once_and_reads_into_the_current_schema():
    registry = MemoryRegistry()
    writer = confluent(registry)
    old = writer._superseded["sandan.ceb.Payment"][0]
    old_id = registry.register("documents.payment-value", old.registered)
    # A record an older writer wrote with the superseded Payment schema.
    buf = io.BytesIO()
    record = dict(writer._by_name["sandan.ceb.Payment"].to_wire(SETS[0].payment))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(old.registered), named_schemas={}), record)
    data = bytes([0]) + old_id.to_bytes(4, "big") + buf.getvalue()
    reader = confluent(registry)
    calls = registry.calls
    name, doc = reader.decode(data)
    name_again, _ = reader.decode(data)
    assert (name, name_again) == ("sandan.ceb.Payment", "sandan.ceb.Payment")
    assert registry.calls == calls + 1
    assert doc["amountPaid"] == SETS[0].payment["amountPaid"]


def test_records_in_sandans_own_framing_stay_readable():
    old = AvroCodec().encode("sandan.ceb.Order", SETS[1].order)
    assert old[0] == 0xA5
    assert confluent().decode(old) == ("sandan.ceb.Order", SETS[1].order)


def test_an_id_the_registry_does_not_know_is_refused_as_bad_input():
    with pytest.raises(WireError, match="schema id 999"):
        confluent().decode(bytes([0]) + (999).to_bytes(4, "big") + b"\x02")


def test_a_confluent_record_without_a_registry_is_refused_clearly():
    data = confluent().encode("sandan.ceb.Payment", SETS[0].payment)
    with pytest.raises(WireError, match="SANDAN_SCHEMA_REGISTRY_URL"):
        AvroCodec().decode(data)


def test_a_registry_that_does_not_answer_is_a_transient_error_not_bad_input():
    registry = MemoryRegistry()
    registry.down = True
    with pytest.raises(RegistryUnavailable):
        confluent(registry).encode("sandan.ceb.Payment", SETS[0].payment)


def test_the_confluent_format_needs_a_registry():
    with pytest.raises(WireError, match="registry"):
        AvroCodec(wire_format="confluent")


def test_amounts_stay_exact():
    doc = dict(SETS[0].payment, amountPaid=Decimal("12345678901234.56789"))
    wire = confluent()
    assert wire.decode(wire.encode("sandan.ceb.Payment", doc))[1]["amountPaid"] == Decimal("12345678901234.56789")


def test_the_format_follows_the_settings(monkeypatch):
    from services.common import avro

    monkeypatch.setattr(avro, "_shared", None)
    monkeypatch.setenv("SANDAN_SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/apis/ccompat/v7")
    monkeypatch.delenv("SANDAN_WIRE_FORMAT", raising=False)
    assert codec().wire_format == "confluent"
    monkeypatch.setattr(avro, "_shared", None)
    monkeypatch.setenv("SANDAN_WIRE_FORMAT", "sandan")
    assert codec().wire_format == "sandan"
    monkeypatch.setattr(avro, "_shared", None)
    monkeypatch.delenv("SANDAN_SCHEMA_REGISTRY_URL")
    monkeypatch.setenv("SANDAN_WIRE_FORMAT", "confluent")
    with pytest.raises(SystemExit, match="SANDAN_SCHEMA_REGISTRY_URL"):
        codec()
    monkeypatch.setattr(avro, "_shared", None)
