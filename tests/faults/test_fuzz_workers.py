"""Hostile records straight onto the workers' input topics (issue 9, §2): no worker dies.

Anything may reach a topic (a buggy producer, a replay tool, another version), so each
worker must take every record, either acting on it or dead-lettering it with a code and a
reason, and carry on. Fed: what the gateway accepted during its fuzz (test_fuzz_submit.py),
undecodable bytes, records of the wrong schema, and well-formed records whose fields were
replaced by hostile values (empty keys, control characters, huge texts, extreme amounts,
no lines, unknown codes), on every topic the three stream workers read. Done means every
worker's committed offsets reached the end of its input topics and every worker still runs.
"""
from __future__ import annotations

import random
import time
from decimal import Decimal

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError

from services.tools import generator as gen
from services.common import kafka_io, topics
from services.common.avro import MAX_UNITS, SCHEMA_OF_KIND, WireError, codec
from services.common.clock import now_ms
from services.common.documents import kind_of
from services.demo import returns_stage
from services.order_match.decide import declaration_id
from services.returns.arrivals import arrival_record
from tests.faults.audit import CRASH_MARK
from tests.faults.conftest import SEED
from tests.faults.fuzz import ACCEPTED_BY_GATEWAY, Tally
from tests.faults.pipeline import Services, environment
from tests.integration.workers import with_prefix

# a well-formed inventory number for the seeds (the fuzzers mutate what follows from it)
SEED_INVT_NO = "29912025I000000001"

TALLY = Tally("fuzz: workers' input topics")
WIRE = codec()
INPUTS = {"order-match": ("documents.order", "documents.payment", "documents.logistics", "documents.inventory"),
          "tax-guarantee": ("declarations.matched", "guarantee.commands"),
          "returns": ("declarations.cleared", "customs.reports", "documents.cancel", "documents.refund",
                      "warehouse.arrivals", "documents.delivery")}
HOSTILE_TEXT = ["", " ", "\x00", "\u202e\u0000x", "零" * 600, "'; DROP TABLE x; --", "../../etc/passwd", "\ud7ff"]
HOSTILE_AMOUNTS = [Decimal(0), Decimal(-1), Decimal("0.00001"), Decimal(MAX_UNITS).scaleb(-5),
                   -Decimal(MAX_UNITS).scaleb(-5), Decimal("26000.00001"), Decimal("5000.00001")]
HOSTILE_INTS = [0, -1, 2**31 - 1, -(2**31), 100]


def originals() -> list[tuple[str, str, dict]]:
    """(topic, schema, record) of one well-formed record per input topic kind."""
    sets = gen.generate(6, fault_share=0, seed=SEED % 1000)
    s = sets[0]
    decl = declaration_id(s.order["ebpCode"], s.order["orderNo"])
    verdict = {"declarationId": decl, "ebpCode": s.order["ebpCode"], "orderNo": s.order["orderNo"],
               "status": "verified", "taxTotal": s.order["taxTotal"], "valueAddedTax": s.order["taxTotal"], "taxableValue": s.order["goodsValue"],
               "assureCode": s.inventory["assureCode"], "buyerKey": "b" * 32, "quotaYear": 2025,
               "inventory": s.inventory, "lastDocumentAt": now_ms(), "decidedAt": now_ms()}
    command = {"commandId": "fuzz-1", "action": "register", "assureCode": s.inventory["assureCode"],
               "kind": "bank_guarantee", "amount": Decimal(1000), "validFrom": "20250101", "validTo": "20301231",
               "actor": "fuzz", "at": now_ms()}
    report = {"reportId": "fuzz-r1", "declarationId": decl, "ebpCode": s.order["ebpCode"],
              "orderNo": s.order["orderNo"], "status": "800", "decidedAt": now_ms(), "reporter": "fuzz"}
    arrival = arrival_record(logistics_no=s.logistics["logisticsNo"], sorting="fit", arrived_at=now_ms(),
                             warehouse_code=gen.WAREHOUSES[0][0])
    records = [(topics.TOPIC_OF_KIND[kind_of(d)], SCHEMA_OF_KIND[kind_of(d)], d) for x in sets for d in x.documents]
    records += [("declarations.matched", "sandan.Verdict", verdict), ("declarations.cleared", "sandan.Verdict", verdict),
                ("guarantee.commands", "sandan.GuaranteeCommand", command),
                ("customs.reports", "sandan.CustomsReport", report),
                ("warehouse.arrivals", "sandan.WarehouseArrival", arrival),
                ("documents.cancel", "sandan.ceb.InvtCancel", returns_stage.cancellation(s, SEED_INVT_NO)),
                ("documents.refund", "sandan.ceb.InvtRefund", returns_stage.return_request(s, SEED_INVT_NO))]
    return records


def hostile_value(rnd: random.Random, value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return rnd.choice(HOSTILE_TEXT + [value * rnd.randint(2, 50)])
    if isinstance(value, Decimal):
        return rnd.choice(HOSTILE_AMOUNTS)
    if isinstance(value, int):
        return rnd.choice(HOSTILE_INTS)
    if isinstance(value, list):
        return rnd.choice([[], value * rnd.randint(2, 40)])
    return value


def mutated(rnd: random.Random, record: dict) -> dict:
    out = dict(record)
    for name in rnd.sample(sorted(out), k=min(len(out), rnd.randint(1, 4))):
        out[name] = hostile_value(rnd, out[name])
    lines = out.get("lines")
    if isinstance(lines, list) and lines and isinstance(lines[0], dict) and rnd.random() < 0.5:
        out["lines"] = [mutated(rnd, line) for line in lines]
    return out


def hostile_records(count: int) -> list[tuple[str, bytes, bytes, str]]:
    """(short topic, key, value, how) of ``count`` hostile records, plus what the gateway accepted."""
    rnd = random.Random(SEED)
    base = originals()
    out = []
    for o in ACCEPTED_BY_GATEWAY:
        out.append((o.topic, o.key, WIRE.encode(o.schema, o.record), "accepted by the gateway fuzz"))
    while len(out) < count + len(ACCEPTED_BY_GATEWAY):
        short, schema, record = rnd.choice(base)
        how = rnd.choice(["mutated fields", "mutated fields", "mutated fields", "undecodable", "wrong schema"])
        if how == "undecodable":
            value = rnd.choice([bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200))),
                                WIRE.encode(schema, record)[:rnd.randint(1, 30)], b"\xa5\xff" + b"x" * 10])
        elif how == "wrong schema":
            other_short, other_schema, other = rnd.choice(base)
            value = WIRE.encode(other_schema, other)
        else:
            try:
                value = WIRE.encode(schema, mutated(rnd, record))
            except (WireError, ValueError, TypeError, OverflowError):
                continue  # not a record the wire format can carry: no producer could send it
        key = str(record.get("orderNo") or record.get("logisticsNo") or record.get("assureCode") or "").encode()
        out.append((short, rnd.choice([key, b"", "键".encode()]), value, how))
    return out


def produce(records) -> None:
    producer = kafka_io.producer()
    for short, key, value, _ in records:
        producer.send(topics.name(short), key=key, value=value)
    producer.flush()
    producer.close()


def unconsumed(prefix: str) -> dict[str, int]:
    """Records each worker group has not committed yet, by worker: records a read_committed
    reader finds past the group's offset (transaction markers take offsets but are no records)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_io.bootstrap())
    consumer = KafkaConsumer(bootstrap_servers=kafka_io.bootstrap(), enable_auto_commit=False,
                             isolation_level="read_committed")
    try:
        behind = {}
        for worker, shorts in INPUTS.items():
            group = f"{prefix}sandan-{worker}"
            try:
                committed = admin.list_group_offsets(group).get(group, {})
            except CoordinatorNotAvailableError:  # a fresh broker makes its offsets topic first
                committed = {}
            parts = [TopicPartition(name, p) for name in map(topics.name, shorts)
                     for p in consumer.partitions_for_topic(name) or ()]
            ends = consumer.end_offsets(parts)
            starts = {tp: committed[tp].offset if tp in committed else 0 for tp in parts}
            behind[worker] = records_between(consumer, {tp: (starts[tp], end) for tp, end in ends.items()
                                                        if end > starts[tp]})
        return behind
    finally:
        admin.close()
        consumer.close()


def records_between(consumer: KafkaConsumer, spans: dict[TopicPartition, tuple[int, int]]) -> int:
    """How many records lie in [start, end) of each partition, as the consumer reads them."""
    if not spans:
        return 0
    consumer.assign(list(spans))
    for tp, (start, _) in spans.items():
        consumer.seek(tp, start)
    found, deadline = 0, time.monotonic() + 30
    while any(consumer.position(tp) < end for tp, (_, end) in spans.items()) and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            found += sum(1 for r in records if r.offset < spans[tp][1])
    consumer.assign([])
    return found


def test_hostile_records_on_every_input_topic_kill_no_worker(private, topic_prefix):
    started = time.monotonic()
    prefix = f"{topic_prefix}fuzz-workers-"
    run_dir = private.runs_dir() / prefix.rstrip("-")
    services = Services(environment(prefix, run_dir), run_dir, {name: 1 for name in INPUTS}, gateway=False)
    records = hostile_records(1500)
    with with_prefix(prefix):
        kafka_io.create_topics()
        services.start_all()
        try:
            produce(records)
            deadline = time.monotonic() + 120
            while (behind := unconsumed(prefix)) and any(behind.values()) and time.monotonic() < deadline:
                services.check()
                time.sleep(1)
            services.check()
            letters = [WIRE.decode(r.value)[1] for r in kafka_io.read_all(topics.name("deadletter"), timeout_s=30)]
        finally:
            services.stop_all()
    TALLY.tried.update(how for _, _, _, how in records)
    TALLY.fates.update(f"dead letter {letter['code']}" for letter in letters)
    crashes = list(services.crashes)
    crashes += [f"{name} still has {n} records to take" for name, n in behind.items() if n]
    crashes += [f"{log.name}: {line[:200]}" for log in services.logs() if log.exists()
                for line in log.read_text(errors="replace").splitlines() if CRASH_MARK in line]
    TALLY.crashes += crashes
    TALLY.row(time.monotonic() - started)
    assert not crashes, "\n".join(crashes)
    assert letters and all(letter["code"].strip() and letter["reason"].strip() for letter in letters)
