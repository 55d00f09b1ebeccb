"""`sandan topics create|list`: the declared topics (services/common/topics.py), and in the Confluent
wire format their value schemas in the schema registry."""
from __future__ import annotations

import sys

from services.common import topics


def add_parser(sub) -> None:
    p = sub.add_parser("topics", help="create or list sandan's Kafka topics")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    verbs.add_parser("create", help="create every declared topic that is missing").set_defaults(run=create)
    verbs.add_parser("list", help="list the declared topics with key and retention").set_defaults(run=list_)


def create(args) -> int:
    from services.common import kafka_io
    try:
        created, existing = kafka_io.create_topics()
    except kafka_io.KafkaError as exc:
        print(f"sandan topics create: Kafka at {kafka_io.bootstrap()} did not answer: {exc}", file=sys.stderr)
        return 2
    for name in created:
        print(f"created  {name}")
    print(f"{len(created)} created, {len(existing)} already present")
    from services.common import avro
    if avro.codec().wire_format == "confluent":
        # create_topics registered them (idempotent: an unchanged schema keeps its id).
        count = sum(1 for t in topics.TOPICS if t.value in avro.codec().names())
        print(f"{count} value schemas registered under <topic>-value (BACKWARD) at {avro.codec().registry.url}")
    return 0


def list_(args) -> int:
    for t in topics.TOPICS:
        retention = "forever" if t.retention_ms < 0 else f"{t.retention_ms // topics.DAY_MS}d"
        policy = "compact" if t.compacted else "delete"
        print(f"{t.full_name:32} key={t.key:26} {policy:7} retention={retention:8} {t.doc}")
    return 0
