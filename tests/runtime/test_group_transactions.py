"""The two requests scope worker rests on, against the real broker (services/common/group_transactions.py):
a transaction's offsets sent with a member the group has moved on from are refused (GroupFenced) and
the transaction can only be aborted; offsets held by an open transaction are read stable only once
it has ended, where aiokafka's own fetch answers the old ones at once."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaProducer
from kafka.admin import NewTopic

from services.common import group_transactions, kafka_io
from services.common.group_transactions import GroupFenced, Member
from tests.runtime.test_fencing import read

pytestmark = pytest.mark.integration


def topics(prefix: str, name: str) -> tuple[str, str]:
    inputs, outputs = f"{prefix}{name}-in", f"{prefix}{name}-out"
    admin = kafka_io.admin()
    admin.create_topics([NewTopic(inputs, 1, 1), NewTopic(outputs, 1, 1)])
    admin.close()
    return inputs, outputs


async def joined(group: str, topic: str, instance: str | None = None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_io.bootstrap(), group_id=group,
                                group_instance_id=instance, enable_auto_commit=False,
                                isolation_level="read_committed", session_timeout_ms=10_000)
    await consumer.start()
    while consumer._coordinator.generation < 0:  # joined: the group has a generation with this member
        await consumer.getmany(timeout_ms=200)
    return consumer


async def stable(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    return (await group_transactions.committed_stable(consumer, [tp], timeout_s=30)).get(tp)


def transactional(txn_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=kafka_io.bootstrap(), transactional_id=txn_id, acks="all",
                            enable_idempotence=True)


async def commit_offset(producer: AIOKafkaProducer, member: Member, group: str, tp: TopicPartition,
                        offset: int, outputs: str, value: bytes) -> None:
    await producer.begin_transaction()
    await producer.send_and_wait(outputs, value)
    group_transactions.commit_as(producer, member)
    await producer.send_offsets_to_transaction({tp: offset}, group)


def test_offsets_sent_with_a_member_the_group_moved_on_from_are_refused_and_the_transaction_aborted(
        stack, topic_prefix):
    inputs, outputs = topics(topic_prefix, "gt-fenced")
    group, tp = f"{topic_prefix}gt-fenced", TopicPartition(inputs, 0)

    async def scenario() -> None:
        first = await joined(group, inputs, "gt-a")
        producer = transactional(f"{group}-a")
        await producer.start()
        second = None
        try:
            member = group_transactions.member_of(first)
            await commit_offset(producer, member, group, tp, 5, outputs, b"current")
            await producer.commit_transaction()
            # stable: a commit's markers reach the offsets after commit_transaction has returned
            assert await stable(first, tp) == 5, "a current member's offsets are committed"

            second = await joined(group, inputs, "gt-b")  # the group moves on: a new generation
            while group_transactions.member_of(first).generation_id == member.generation_id:
                await first.getmany(timeout_ms=200)  # the first member rejoins too
            with pytest.raises(GroupFenced, match="offsets refused by the group coordinator"):
                await commit_offset(producer, member, group, tp, 9, outputs, b"stale")
            await producer.abort_transaction()
            assert await stable(first, tp) == 5, "the stale member's offsets were not committed"
        finally:
            await producer.stop()
            for consumer in (first, second):
                if consumer is not None:
                    await consumer.stop()

    asyncio.run(scenario())
    later = KafkaProducer(bootstrap_servers=kafka_io.bootstrap(), acks="all")
    later.send(outputs, b"later").get(timeout=30)
    later.close()
    # an open transaction would hold read_committed readers before "stale": "later" unseen
    assert [r.value for r in read(outputs, "read_committed")] == [b"current", b"later"], \
        "the refused transaction was aborted on the broker"


def test_a_member_without_a_generation_sends_nothing():
    class Coordinator:
        generation, member_id, _group_instance_id = -1, "", "gt-c"

    class Consumer:
        _coordinator = Coordinator()

    with pytest.raises(GroupFenced, match="not a member"):
        group_transactions.member_of(Consumer())


def test_offsets_held_by_an_open_transaction_are_read_stable_once_it_ends(stack, topic_prefix):
    inputs, outputs = topics(topic_prefix, "gt-stable")
    group, tp = f"{topic_prefix}gt-stable", TopicPartition(inputs, 0)

    async def scenario() -> None:
        consumer = await joined(group, inputs, "gt-s")
        producer = transactional(f"{group}-s")
        await producer.start()
        try:
            member = group_transactions.member_of(consumer)
            await commit_offset(producer, member, group, tp, 3, outputs, b"first")
            await producer.commit_transaction()
            await commit_offset(producer, member, group, tp, 8, outputs, b"second")  # left open
            reading = asyncio.ensure_future(group_transactions.committed_stable(consumer, [tp], timeout_s=60))
            await asyncio.sleep(2.0)
            assert not reading.done(), "an open transaction holds the offsets: no stable answer yet"
            assert await consumer.committed(tp) == 3, "aiokafka's own fetch answers the old offset meanwhile"
            await producer.commit_transaction()
            assert await asyncio.wait_for(reading, 30) == {tp: 8}
            assert await group_transactions.committed_stable(consumer, [TopicPartition(outputs, 0)],
                                                              timeout_s=5) == {TopicPartition(outputs, 0): None}
        finally:
            await producer.stop()
            await consumer.stop()

    asyncio.run(scenario())
