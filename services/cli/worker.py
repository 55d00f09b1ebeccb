"""`sandan worker NAME`: run one stream-processing service in the foreground."""
from __future__ import annotations

import asyncio
import importlib
import sys
import time

from kafka.errors import KafkaError

from services.common import changelogs, config, garbage_collector, kafka_io, metrics
from services.common.worker_exit import CRASHED, log

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
    code = topics_ready(args.name)
    if code is not None:
        return code
    metrics.serve(config.get_int(port_setting))
    try:
        worker, handle = importlib.import_module(module_name).create_worker()
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk under its state folder: start again later
        log.critical("worker %s could not start: %r", args.name, exc)
        return CRASHED
    if worker.tables:  # created and complete before the consumer takes their metadata
        changelogs.declare_topics({t.topic: config.get_int("SANDAN_TOPIC_PARTITIONS") for t in worker.tables})
    garbage_collector.tune()
    asyncio.run(worker.run(handle))
    return 0


def topics_ready(name: str, sleep=time.sleep, clock=time.monotonic) -> int | None:
    """Creates the topics, waiting for Kafka while it does not answer (a supervisor may start a
    worker again while the brokers restart): None when done, else the exit code."""
    wait_s = config.get_int("SANDAN_WORKER_KAFKA_WAIT")
    deadline, pause = clock() + wait_s, 0.5
    while True:
        try:
            with kafka_io.quiet("kafka"):  # its line per refused connection; ours below says it once
                kafka_io.create_topics()  # idempotent; a worker never starts against missing topics
            return None
        except kafka_io.KafkaSecurityError as exc:  # waiting cannot mend a refused login
            print(f"sandan worker {name}: {exc}", file=sys.stderr)
            return 2
        except KafkaError as exc:
            if clock() >= deadline:
                log.critical("worker %s: Kafka at %s did not answer within SANDAN_WORKER_KAFKA_WAIT=%d s (%r)",
                             name, kafka_io.bootstrap(), wait_s, exc)
                return CRASHED
            log.warning("worker %s: Kafka at %s does not answer (%r); trying again in %.1f s",
                        name, kafka_io.bootstrap(), exc, pause)
            sleep(pause)
            pause = min(pause * 2, 10.0)
