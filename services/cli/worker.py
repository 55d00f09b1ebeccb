"""`sandan worker NAME`: run one stream-processing service in the foreground."""
from __future__ import annotations

import asyncio
import importlib
import sys

from services.common import changelogs, config, kafka_io, metrics

WORKERS = {
    "order-match": ("services.order_match.app", "SANDAN_ORDER_MATCH_METRICS_PORT"),
    "returns": ("services.returns.app", "SANDAN_RETURNS_METRICS_PORT"),
    "tax-guarantee": ("services.tax_guarantee.app", "SANDAN_TAX_GUARANTEE_METRICS_PORT"),
}


def add_parser(sub) -> None:
    p = sub.add_parser("worker", help="run a sandan stream worker (order-match, ...)")
    p.add_argument("name", choices=sorted(WORKERS))
    p.set_defaults(run=run)


def run(args) -> int:
    """Every worker runs on ``services/common/partition_worker.py``; exits 70 when it must be started again."""
    module_name, port_setting = WORKERS[args.name]
    try:
        kafka_io.create_topics()  # idempotent; a worker never starts against missing topics
    except kafka_io.KafkaSecurityError as exc:
        print(f"sandan worker {args.name}: {exc}", file=sys.stderr)
        return 2
    metrics.serve(config.get_int(port_setting))
    worker, handle = importlib.import_module(module_name).create_worker()
    if worker.tables:  # created and complete before the consumer takes their metadata
        changelogs.declare_topics({t.topic: config.get_int("SANDAN_TOPIC_PARTITIONS") for t in worker.tables})
    asyncio.run(worker.run(handle))
    return 0
