"""Every dead letter, whoever wrote it: the deadletter topic's size as a gauge.

The workers and the gateway count their own dead letters (``sandan_dead_letters_total``), but a
one-shot command such as ``sandan publish`` is never scraped. The gateway runs all the time, so it
reads the deadletter topic's end offsets every ``SANDAN_GATEWAY_DEADLETTER_POLL_SECONDS`` and
exports their sum, ``sandan_deadletter_topic_records``: it grows with every record on the topic,
from any process, and the dead-letter alert reads it beside the counters.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kafka import TopicPartition
from kafka.errors import KafkaError
from prometheus_client import Gauge

from services.common import topics

log = logging.getLogger("sandan.gateway")
_gauge: Gauge | None = None


def gauge() -> Gauge:
    global _gauge
    if _gauge is None:
        _gauge = Gauge("sandan_deadletter_topic_records",
                       "Records ever written to the deadletter topic (sum of its end offsets), by any process")
    return _gauge


def end_offset_sum(consumer, topic: str) -> int:
    """Sum of the topic's end offsets (a kafka-python consumer: it fetches the metadata it lacks)."""
    partitions = consumer.partitions_for_topic(topic) or set()
    ends = consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
    return sum(ends.values())


async def watch(consumer_factory: Callable[[], object], every_s: float, stop: asyncio.Event) -> None:
    """Until ``stop``: the deadletter topic's end offsets, summed, into the gauge. Kafka not
    answering costs a warning and the next round, never the gateway. The two calls per round
    block briefly, so they run in a thread."""
    topic, metric = topics.name("deadletter"), gauge()
    consumer = None
    try:
        while not stop.is_set():
            try:
                if consumer is None:
                    consumer = await asyncio.to_thread(consumer_factory)
                metric.set(await asyncio.to_thread(end_offset_sum, consumer, topic))
            except KafkaError as exc:  # the gauge keeps its last value until Kafka answers again
                log.warning("deadletter watch: Kafka did not answer (%s)", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
    finally:
        if consumer is not None:
            consumer.close()
