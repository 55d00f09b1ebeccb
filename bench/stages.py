"""Where the pipeline spends its time: when each stage's output topic stopped growing.

A sampler reads the end offsets of the stages' output topics once a second while the
benchmark runs. The stage whose output completes last, relative to the one before it, is
the one that held the others back: with a backlog, every stage downstream of the slowest
finishes right after it.
"""
from __future__ import annotations

import threading
import time

from kafka import KafkaConsumer, TopicPartition

from services.common import config, topics

STAGES = (("documents in", ("documents.order", "documents.payment", "documents.logistics", "documents.inventory")),
          ("order_match: verdicts", ("declarations.verdicts",)),
          ("tax_guarantee: cleared", ("declarations.cleared",)))


class StageSampler:
    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-stages", daemon=True)

    def start(self) -> "StageSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=config.get("SANDAN_KAFKA_BOOTSTRAP"), group_id=None)
        try:
            parts = {name: [TopicPartition(topics.name(t), p) for t in short
                            for p in (consumer.partitions_for_topic(topics.name(t)) or ())]
                     for name, short in STAGES}
            while not self._stop.is_set():
                ends = consumer.end_offsets([tp for tps in parts.values() for tp in tps])
                self.samples.append((time.time() * 1000, {name: sum(ends[tp] for tp in tps)
                                                          for name, tps in parts.items()}))
                self._stop.wait(self.interval_s)
        finally:
            consumer.close()

    def finished(self, start_ms: float) -> dict[str, float]:
        """Seconds after ``start_ms`` at which each stage's output reached its final count."""
        if not self.samples:
            return {}
        final = self.samples[-1][1]
        done = {}
        for name, _ in STAGES:
            first = next(at for at, counts in self.samples if counts[name] >= final[name])
            done[name] = round(max(0.0, first - start_ms) / 1000, 1)
        return done
