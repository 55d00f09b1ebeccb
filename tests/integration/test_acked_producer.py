"""The producer behind the gateway's and paydata's answers, on the real broker: a producer that
lost track of a record is replaced, so one refused batch does not refuse a partition for ever,
and a call Kafka cannot acknowledge ends at its deadline.

The gap is made the way aiokafka makes it when it gives up on a batch whose partition has no
leader (its accumulator takes the batch's sequence numbers, then fails it): by taking numbers
the producer never sends. That reaches into aiokafka's transaction manager on purpose.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError, OutOfOrderSequenceNumber
from kafka.admin import KafkaAdminClient, NewTopic

from services.common import kafka_io
from services.common.acked_producer import AckedProducer
from services.common.outputs import Output
from services.gateway.errors import CallError
from services.gateway.kafka_bridge import KafkaPublisher

pytestmark = pytest.mark.integration


def new_topic(prefix: str, **configs: str) -> str:
    name = f"{prefix}acked-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_io.bootstrap())
    try:
        admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        admin.close()
    return name


def make() -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all", enable_idempotence=True)


def skip_numbers(producer: AIOKafkaProducer, topic: str, count: int = 3) -> None:
    """What an expired batch leaves behind: sequence numbers taken and never sent (the broker
    refuses the gap only on a partition that already has a record of this producer)."""
    producer._txn_manager.increment_sequence_number(TopicPartition(topic, 0), count)


def values(topic: str) -> list[bytes]:
    return [r.value for r in kafka_io.read_all(topic, timeout_s=30)]


def test_aiokafka_alone_refuses_a_partition_for_ever_after_a_gap(stack, topic_prefix):
    """Why AckedProducer renews: the plain idempotent producer never recovers (if this starts to
    fail, aiokafka resets its sequences itself and the renewal may be reconsidered)."""
    topic = new_topic(topic_prefix)

    async def attempts() -> list[str]:
        producer = make()
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"before")
            skip_numbers(producer, topic)
            found = []
            for i in range(3):
                try:
                    await producer.send_and_wait(topic, b"after-%d" % i)
                    found.append("ok")
                except KafkaError as exc:
                    found.append(type(exc).__name__)
            return found
        finally:
            await producer.stop()

    assert asyncio.run(attempts()) == [OutOfOrderSequenceNumber.__name__] * 3


def test_a_refused_call_renews_the_producer_and_the_next_call_is_acknowledged(stack, topic_prefix):
    topic = new_topic(topic_prefix)

    async def run() -> tuple[list[str], int]:
        acked = AckedProducer(make, 30, "test")
        await acked.start()
        try:
            await acked.send_all([(topic, None, b"before")])
            skip_numbers(acked._current, topic)
            found = []
            for i in range(3):
                try:
                    await acked.send_all([(topic, b"k", b"after-%d" % i)])
                    found.append("ok")
                except KafkaError as exc:
                    found.append(type(exc).__name__)
            return found, acked.renewals
        finally:
            await acked.stop()

    found, renewals = asyncio.run(run())
    assert found == [OutOfOrderSequenceNumber.__name__, "ok", "ok"]
    assert renewals == 1
    assert values(topic) == [b"before", b"after-1", b"after-2"]


def test_calls_failing_together_renew_the_producer_once(stack, topic_prefix):
    topic = new_topic(topic_prefix)

    async def run() -> tuple[list, int]:
        acked = AckedProducer(make, 30, "test")
        await acked.start()
        try:
            await acked.send_all([(topic, None, b"before")])  # the partition knows this producer
            skip_numbers(acked._current, topic)
            together = await asyncio.gather(*(acked.send_all([(topic, None, b"x%d" % i)]) for i in range(5)),
                                            return_exceptions=True)
            await acked.send_all([(topic, None, b"after")])
            return together, acked.renewals
        finally:
            await acked.stop()

    together, renewals = asyncio.run(run())
    assert renewals == 1
    assert all(isinstance(r, OutOfOrderSequenceNumber) for r in together), together
    assert values(topic) == [b"before", b"after"]


def test_a_call_its_producer_cannot_deliver_ends_at_its_deadline_and_the_next_is_acknowledged(stack, topic_prefix):
    """A producer whose sender routine is gone (aiokafka's ends on some transaction and
    connection errors) holds its records for ever: the call must still end, and the next one
    get through on a new producer."""
    topic = new_topic(topic_prefix)

    async def run() -> tuple[BaseException | None, float, int]:
        acked = AckedProducer(make, 3, "test")
        await acked.start()
        loop = asyncio.get_running_loop()
        try:
            await acked.send_all([(topic, None, b"before")])
            acked._current._sender.sender_task.cancel()
            started = loop.time()
            try:
                await acked.send_all([(topic, None, b"stranded")])
                raised = None
            except KafkaError as exc:
                raised = exc
            took = loop.time() - started
            await acked.send_all([(topic, None, b"after")])
            return raised, took, acked.renewals
        finally:
            await acked.stop()

    raised, took, renewals = asyncio.run(run())
    assert isinstance(raised, KafkaTimeoutError) and "within 3 s" in str(raised)
    assert took >= 3  # the deadline, not sooner
    assert renewals == 1
    assert values(topic) == [b"before", b"after"]


def test_the_gateway_answers_unavailable_once_then_publishes_again(stack, topic_prefix):
    topic = new_topic(topic_prefix)
    output = Output(topic="unused", key=b"k", schema="sandan.Verdict", record={})

    async def run() -> list[str]:
        publisher = KafkaPublisher(kafka_io.bootstrap(), deadline_s=30)
        publisher.wire = type("Raw", (), {"encode": staticmethod(lambda schema, record: b"v")})()
        await publisher.start()
        found = []
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("services.gateway.kafka_bridge.topics.name", lambda short: topic)
                await publisher.publish([output])  # the partition knows this producer
                skip_numbers(publisher.producer._current, topic)
                for _ in range(3):
                    try:
                        await publisher.publish([output])
                        found.append("ok")
                    except CallError as exc:
                        found.append(f"{exc.status}: {exc.message}")
        finally:
            await publisher.stop()
        return found

    found = asyncio.run(run())
    assert found[1:] == ["ok", "ok"]
    assert found[0].startswith("UNAVAILABLE") and "OutOfOrderSequenceNumber" in found[0]
    assert values(topic) == [b"v"] * 3
