"""The gateway's copy of the certificate registry: the compacted ``certificates`` topic read
from its start into a ``CertificateBook`` and followed from there, so a certificate added or
revoked with ``sandan certs`` takes effect within a poll (half a second)."""
from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.common import kafka_security, topics
from services.common.avro import WireError, codec
from services.common.signing.crypto import SignatureError
from services.common.signing.registry import TOPIC, CertificateBook

log = logging.getLogger("sandan.gateway.certificates")
POLL_MS = 500
RETRY_S = 2.0


class CertificateFollower:
    def __init__(self, bootstrap: str, book: CertificateBook, ready: asyncio.Event) -> None:
        self.bootstrap, self.book, self.ready = bootstrap, book, ready
        self.applied = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: read and follow the topic; ``ready`` once the records that were on it
        at start are in the book. A Kafka outage is logged and retried (the book stays as it is)."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except KafkaError as exc:
                log.warning("certificate registry: Kafka did not answer (%s); retrying in %.0f s",
                            type(exc).__name__, RETRY_S)
                try:
                    await asyncio.wait_for(stop.wait(), RETRY_S)
                except TimeoutError:
                    pass

    async def _follow(self, stop: asyncio.Event) -> None:
        topic = topics.name(TOPIC)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id="sandan-gateway-certificates",
                                    **kafka_security.aiokafka_kwargs())
        await consumer.start()
        try:
            await consumer._client._wait_on_metadata(topic)  # learn the partitions without subscribing
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=POLL_MS)
                for records in batch.values():
                    for record in records:
                        self._apply(record)
                if not self.ready.is_set() and all([await consumer.position(p) >= end[p] for p in parts]):
                    log.info("certificate registry loaded: %d certificates", len(self.book.entries))
                    self.ready.set()
        finally:
            await consumer.stop()

    def _apply(self, record) -> None:
        try:
            _, value = codec().decode(record.value)
            self.book.apply(value)
            self.applied += 1
        except (WireError, SignatureError, KeyError, TypeError) as exc:
            # One bad record must not take the registry down: the others still apply.
            log.warning("certificate registry: record at %s:%d:%d skipped: %s", record.topic, record.partition,
                        record.offset, exc)
