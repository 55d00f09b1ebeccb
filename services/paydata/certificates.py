"""The certificate registry as the paydata service sees it: the whole compacted ``certificates``
topic (``sandan certs``), read from its start and followed, into one ``CertificateBook``.
``ready`` is set once what the topic held at the start is read: the service takes no upload before."""
from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common import config, kafka_io, kafka_security
from services.common.avro import WireError, codec
from services.common.signing import registry
from services.common.signing.crypto import SignatureError

log = logging.getLogger("sandan.paydata.certificates")


class CertificateFollower:
    def __init__(self) -> None:
        self.book = registry.CertificateBook()
        self.topic = config.get("SANDAN_TOPIC_PREFIX") + registry.TOPIC
        self.wire = codec()
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=config.get("SANDAN_KAFKA_BOOTSTRAP"), enable_auto_commit=False,
                                    **kafka_security.aiokafka_kwargs())
        await consumer.start()
        try:
            ends = None
            while not stop.is_set():
                if ends is None:
                    ends = await asyncio.to_thread(kafka_io.end_offsets, self.topic)
                    if not ends:
                        self.ready.set()  # nothing registered yet
                        ends = None
                        await asyncio.sleep(1.0)
                        continue
                    partitions = [TopicPartition(self.topic, n) for n in sorted(ends)]
                    consumer.assign(partitions)
                    await consumer.seek_to_beginning(*partitions)
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        self.apply(record.value)
                if not self.ready.is_set() and await self._caught_up(consumer, ends):
                    log.info("certificates: %d read", len(self.book.entries))
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _caught_up(self, consumer, ends: dict[int, int]) -> bool:
        for number, end in ends.items():
            if await consumer.position(TopicPartition(self.topic, number)) < end:
                return False
        return True

    def apply(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            self.book.apply(self.wire.decode(value)[1])
        except (WireError, SignatureError, KeyError) as exc:  # one bad record must not stop the registry
            log.warning("certificates: a record skipped (%s)", type(exc).__name__)
