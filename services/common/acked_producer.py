"""Publishing for the processes that answer a caller once Kafka has the records (the gateway,
the paydata service): each call's records acknowledged by all in-sync replicas, or the call
fails within its deadline, and a producer that lost track of a record is never used again.

Why a producer is renewed: an idempotent producer numbers its records per partition, and a
batch it gives up on keeps its numbers. aiokafka (0.14) gives up on a batch whose partition has
had no leader for ``request_timeout_ms``, idempotence or not, and the broker then refuses every
later batch of that producer on that partition (OutOfOrderSequenceNumber) for as long as the
process lives: a gateway that answers UNAVAILABLE to that partition's documents for ever. A new
producer gets a new producer id and numbers from 0. A call past its deadline leaves its
records' fate unknown, and a producer whose sender routine died holds its records for ever:
both retire the producer too. The records of a failed call may still reach Kafka; the caller
was told nothing of them is acknowledged and sends them again (consumers take a document
twice as once).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from prometheus_client import Counter

log = logging.getLogger("sandan.kafka")

RENEWALS = Counter("sandan_kafka_producer_renewals_total",
                   "Producers replaced after a record they took was refused, timed out or stranded",
                   ["client", "reason"])

Record = tuple[str, bytes | None, bytes]  # full topic name, key, value


class AckedProducer:
    def __init__(self, make: Callable[[], AIOKafkaProducer], deadline_s: float, client: str) -> None:
        self.make, self.deadline_s, self.client = make, deadline_s, client
        self._current: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()
        self.renewals = 0

    async def start(self) -> None:
        """The first producer: a service refuses to start while Kafka cannot be reached."""
        await self._producer()

    async def stop(self) -> None:
        """Flushes what the current producer holds; retired ones get their deadline to finish."""
        current, self._current = self._current, None
        if current is not None:
            await current.stop()
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=self.deadline_s)

    async def send_all(self, records: Sequence[Record]) -> None:
        """Every record acknowledged, or a ``KafkaError`` (``KafkaTimeoutError`` past the deadline)."""
        producer = await self._producer()
        deliveries: list[asyncio.Future] = []
        refused: KafkaError | None = None
        try:
            async with asyncio.timeout(self.deadline_s):
                try:
                    for topic, key, value in records:
                        deliveries.append(await producer.send(topic, value=value, key=key))
                except MessageSizeTooLargeError as exc:  # refused before it was numbered: nothing to renew
                    refused = exc
                except KafkaError as exc:  # a closed producer, or one whose sender died
                    self._retire(producer, exc)
                    raise
                if deliveries:
                    await asyncio.wait(deliveries)  # not gather: a deadline must not cancel aiokafka's futures
        except TimeoutError:
            self._retire(producer, KafkaTimeoutError())
            raise KafkaTimeoutError(f"Kafka did not acknowledge {len(records)} record(s) within "
                                    f"{self.deadline_s:g} s") from None
        # every failure read (asyncio logs those never retrieved); the first is the call's answer
        lost = next((exc for exc in [d.exception() for d in deliveries] if exc is not None), None)
        if lost is not None:
            self._retire(producer, lost)
            raise lost
        if refused is not None:
            raise refused

    async def _producer(self) -> AIOKafkaProducer:
        current = self._current
        if current is not None:
            return current
        async with self._starting:  # one start for the calls that find none
            if self._current is None:
                producer = self.make()
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(KafkaError):
                        await producer.stop()
                    raise
                self._current = producer
            return self._current

    def _retire(self, producer: AIOKafkaProducer, why: BaseException) -> None:
        if producer is not self._current:
            return  # already retired by another call's failure
        self._current = None
        self.renewals += 1
        reason = type(why).__name__
        RENEWALS.labels(client=self.client, reason=reason).inc()
        log.warning("%s: Kafka producer retired after %s; the next call starts a new one", self.client, reason)
        task = asyncio.ensure_future(self._stop_retired(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _stop_retired(self, producer: AIOKafkaProducer) -> None:
        """Its other records still get their answer (a refusal, or a late delivery): bounded, as a
        producer that cannot reach Kafka retries for ever."""
        try:
            await asyncio.wait_for(producer.stop(), self.deadline_s)
        except (TimeoutError, KafkaError) as exc:
            log.warning("%s: a retired producer did not stop cleanly (%s)", self.client, type(exc).__name__)
