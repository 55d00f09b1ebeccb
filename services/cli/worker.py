"""`sandan worker NAME`: run one stream-processing service in the foreground."""
from __future__ import annotations

import asyncio
import logging

from services.common import changelogs, config, kafka_io, metrics, rebalance_guard

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
    import importlib

    import faust

    module_name, port_setting = WORKERS[args.name]
    kafka_io.create_topics()  # idempotent; a worker never starts against missing topics
    metrics.serve(config.get_int(port_setting))
    module = importlib.import_module(module_name)
    if hasattr(module, "create_worker"):  # on aiokafka alone (services/common/partition_worker.py)
        worker, handle = module.create_worker()
        if worker.tables:
            changelogs.declare_topics({t.topic: config.get_int("SANDAN_TOPIC_PARTITIONS") for t in worker.tables})
        asyncio.run(worker.run(handle))
        return 0
    app = module.create_app()
    rebalance_guard.install(app)  # exit 75 on a rebalance, 70 on an agent error, no commit on SIGTERM
    changelogs.declare(app)  # before the consumer takes the topics' metadata
    worker = faust.Worker(app, loglevel=logging.getLevelName(logging.getLogger().level), quiet=True)
    worker.execute_from_commandline()
    return 0
