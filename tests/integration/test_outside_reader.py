"""A reader that is not ours reads what sandan writes in the Confluent wire format.

tests/outside_reader is a Go program made only of standard parts (franz-go's Confluent Serde
and schema-registry client, hamba/avro): it gets every schema from the registry by the id in
the record. Built once into .cache/outside-reader (rebuilt when its source changes).
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from decimal import Decimal

import fastavro
import pytest

from services.common import config, kafka_io, topics
from services.common.avro import AvroCodec, topic_subjects
from services.common.schema_registry import RegistryClient, RegistryUnavailable
from services.tools.generator import generate

SOURCE = config.PROJECT_ROOT / "tests" / "outside_reader"
CACHE = config.PROJECT_ROOT / ".cache" / "outside-reader"
STACK_SH = config.PROJECT_ROOT / "scripts" / "stack.sh"


def _registry_url() -> str:
    return config.get("SANDAN_SCHEMA_REGISTRY_URL") or \
        f"http://127.0.0.1:{config.get('SANDAN_SCHEMA_REGISTRY_PORT')}/apis/ccompat/v7"


@pytest.fixture(scope="module")
def registry(stack):
    """The stack's schema registry; started here (and stopped after) if it is not running."""
    client = RegistryClient(_registry_url())
    started = False
    try:
        client.subjects()
    except RegistryUnavailable:
        proc = subprocess.run([str(STACK_SH), "up", "registry"], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        started = True
    yield client
    if started:
        subprocess.run([str(STACK_SH), "down", "registry"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def outside_reader() -> str:
    go = shutil.which("go")
    assert go, "Go is needed to build the outside reader (tests/outside_reader)"
    digest = hashlib.sha256(b"".join((SOURCE / f).read_bytes() for f in ("go.mod", "go.sum", "main.go"))).hexdigest()[:12]
    binary = CACHE / f"outside-reader-{digest}"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([go, "build", "-o", str(binary), "."], cwd=SOURCE, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
    return str(binary)


def test_a_go_consumer_with_a_standard_confluent_deserializer_reads_sandans_records(
        stack, topic_prefix, registry, outside_reader, monkeypatch):
    monkeypatch.setenv("SANDAN_TOPIC_PREFIX", f"{topic_prefix}outside-")
    spec = topics.BY_NAME["documents.order"]
    wire = AvroCodec(wire_format="confluent", registry=registry, subjects=topic_subjects)
    kafka_io.create_topics([spec])
    wire.register(spec.value, [f"{spec.full_name}-value"])
    orders = [s.order for s in generate(6, fault_share="0", seed=11)]
    producer = kafka_io.producer()
    for order in orders:
        producer.send(spec.full_name, key=order["orderNo"].encode(), value=wire.encode(spec.value, order))
    producer.flush()
    producer.close()

    proc = subprocess.run([outside_reader, "-brokers", stack.bootstrap, "-registry", registry.url,
                           "-topic", spec.full_name, "-n", str(len(orders))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    read = {line["key"]: line for line in map(json.loads, proc.stdout.splitlines())}
    assert set(read) == {o["orderNo"] for o in orders}

    registered = registry.versions(f"{spec.full_name}-value")
    assert len(registered) == 2  # the superseded order.v1 and the current schema, both kept
    for order in orders:
        got = read[order["orderNo"]]
        # What any Avro reader makes of the same bytes with the registered schema: the Go
        # consumer saw exactly that, all fields, no sandan framing involved.
        schema = fastavro.parse_schema(json.loads(registry.schema(got["id"])), named_schemas={})
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, wire._by_name[spec.value].to_wire(order))
        expected = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), schema, None)
        assert got["value"] == json.loads(json.dumps(expected))
        # And amounts mean what sandan meant: scale-5 longs.
        assert Decimal(got["value"]["acturalPaid"]).scaleb(-5) == order["acturalPaid"]
        assert [Decimal(line["totalPrice"]).scaleb(-5) for line in got["value"]["lines"]] == \
            [line["totalPrice"] for line in order["lines"]]
