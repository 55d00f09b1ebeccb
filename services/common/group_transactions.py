"""One transaction per worker, fenced by the consumer group's generation (KIP-447), on aiokafka 0.14.

aiokafka adds a transaction's input offsets with TxnOffsetCommit v0, which names no group
member: only a producer per input partition, fenced by its transactional id when the partition's
next owner starts its own, keeps a worker that lost its partitions from committing for them.
With one transaction per worker the offsets go with the member id and generation the worker had
when it handled their records (v3): the group coordinator refuses them once the group has moved
on (``GroupFenced``) and the transaction is aborted, outputs and table changes with it. The next
owner reads its offsets stable (OffsetFetch v7, ``require_stable``): Kafka answers once no
transaction holding offsets of those partitions is open, so it never starts from an offset a
committing transaction is about to move.
"""
from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.client import ConnectionGroup
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.producer import sender as _sender
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (Boolean, CompactArray, CompactString, Int16, Int32, Int64, Schema,
                                     TaggedFields)

# error codes of the protocol that aiokafka 0.14 has no class for
FENCED_INSTANCE_ID = 82
UNSTABLE_OFFSET_COMMIT = 88
# the group has moved on without this member: its offsets (and so its transaction) are refused
_MOVED_ON = {kafka_errors.IllegalGenerationError.errno, kafka_errors.UnknownMemberIdError.errno, FENCED_INSTANCE_ID}
_COORDINATOR_MOVED = {kafka_errors.NotCoordinatorError.errno, kafka_errors.CoordinatorNotAvailableError.errno,
                      kafka_errors.CoordinatorLoadInProgressError.errno}
STABLE_RETRY_S = 0.1


class GroupFenced(ProducerFenced):
    """The group coordinator refused a transaction's offsets: another worker owns the partitions now.
    ``rejoin``: this process may join the group again; not when another process took its static
    instance id (FENCED_INSTANCE_ID: rejoining would fence that one in turn)."""

    def __init__(self, msg: str = "the consumer group moved on without this worker", *, rejoin: bool = True) -> None:
        super().__init__(msg)
        self.rejoin = rejoin


class Member(NamedTuple):
    """Who commits the offsets: checked by the group coordinator against the group as it is."""
    generation_id: int
    member_id: str
    group_instance_id: str | None


def member_of(consumer) -> Member:
    """The consumer's place in its group now; GroupFenced when it has none (aiokafka resets it to
    generation -1 after a failed heartbeat, and a v3 commit without one would not be checked)."""
    coordinator = consumer._coordinator  # aiokafka's, not public
    member = Member(coordinator.generation, coordinator.member_id or "", coordinator._group_instance_id)
    if member.generation_id < 0 or not member.member_id:
        raise GroupFenced("this worker is not a member of its group's current generation")
    return member


def commit_as(producer, member: Member) -> None:
    """The member a producer's next TxnOffsetCommit names (read when its sender builds the request)."""
    apply()
    producer._sender.sandan_member = member  # aiokafka's sender, not public


class _TxnOffsetCommitResponseV3(Response):
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequestV3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = _TxnOffsetCommitResponseV3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("committed_offset", Int64), ("committed_leader_epoch", Int32),
                ("committed_metadata", CompactString("utf-8")), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitV3(Request[_TxnOffsetCommitRequestV3]):
    API_KEY = 28

    def __init__(self, *fields) -> None:
        self._fields = fields

    def build(self, request_struct_class: type[_TxnOffsetCommitRequestV3]) -> _TxnOffsetCommitRequestV3:
        return request_struct_class(*self._fields)


class _OffsetFetchResponseV7(Response):
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("committed_offset", Int64), ("committed_leader_epoch", Int32),
                ("metadata", CompactString("utf-8")), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class _OffsetFetchRequestV7(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = _OffsetFetchResponseV7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")), ("partition_indexes", CompactArray(Int32)), ("tags", TaggedFields))),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class OffsetFetchStable(Request[_OffsetFetchRequestV7]):
    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[TopicPartition]) -> None:
        self._group_id = group_id
        self._partitions = partitions

    def build(self, request_struct_class: type[_OffsetFetchRequestV7]) -> _OffsetFetchRequestV7:
        by_topic: dict[str, list[int]] = {}
        for tp in self._partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        topics = [(topic, sorted(numbers), {}) for topic, numbers in sorted(by_topic.items())]
        return request_struct_class(self._group_id, topics, True, {})


class _V0Errors(NamedTuple):
    """A v3 answer in the shape aiokafka's own handler reads (v0's)."""
    errors: list


class _MemberTxnOffsetCommitHandler(_sender.TxnOffsetCommitHandler):
    """aiokafka's handler, sending v3 with the member when the producer has one (``commit_as``)."""

    def create_request(self):
        member = getattr(self._sender, "sandan_member", None)
        if member is None:
            return super().create_request()
        txn = self._sender._txn_manager
        topics: dict[str, list] = {}
        for tp, offset in sorted(self._offsets.items()):
            topics.setdefault(tp.topic, []).append((tp.partition, offset.offset, -1, offset.metadata, {}))
        return TxnOffsetCommitV3(txn.transactional_id, self._group_id, txn.producer_id, txn.producer_epoch,
                                 member.generation_id, member.member_id, member.group_instance_id,
                                 [(topic, partitions, {}) for topic, partitions in topics.items()], {})

    def handle_response(self, resp):
        if resp.API_VERSION < 3:
            return super().handle_response(resp)
        codes = {code for _, partitions, _ in resp.topics for _, code, _ in partitions}
        moved_on = codes & _MOVED_ON
        if moved_on:
            _refused(self._sender._txn_manager, GroupFenced(
                f"offsets refused by the group coordinator ({_error_name(min(moved_on))}): "
                "the group moved on without this worker", rejoin=FENCED_INSTANCE_ID not in moved_on))
            return None
        if kafka_errors.RebalanceInProgressError.errno in codes:
            return self._default_backoff  # sent again, with the same member: refused if the group moved on
        return super().handle_response(_V0Errors(
            [(topic, [(partition, code) for partition, code, _ in partitions]) for topic, partitions, _ in resp.topics]))


def _refused(txn, exc: GroupFenced) -> None:
    """The transaction can only be aborted now. aiokafka's own abortable error also forgets the
    partitions and group the transaction holds, and its abort then sends no EndTxn: the open
    transaction would hold every read_committed reader of those partitions until its timeout."""
    txn._transition_to(TransactionState.ABORTABLE_ERROR)  # aiokafka's transaction manager, not public
    txn._pending_txn_partitions.clear()
    for _, _, offsets_sent in txn._pending_txn_offsets:
        offsets_sent.set_exception(exc)  # what send_offsets_to_transaction raises
    txn._pending_txn_offsets.clear()
    txn._transaction_waiter.set_exception(exc)
    txn._transaction_waiter.exception()  # raised to the caller above; a commit asked for raises it again


def _error_name(code: int) -> str:
    return "FENCED_INSTANCE_ID" if code == FENCED_INSTANCE_ID else kafka_errors.for_code(code).__name__


def apply() -> None:
    """Once per process, before any producer exists; producers without a member send v0 as before."""
    if _sender.TxnOffsetCommitHandler is not _MemberTxnOffsetCommitHandler:
        _sender.TxnOffsetCommitHandler = _MemberTxnOffsetCommitHandler


async def committed_stable(consumer, partitions: list[TopicPartition], *, timeout_s: float
                           ) -> dict[TopicPartition, int | None]:
    """The group's committed offsets of ``partitions`` once no open transaction holds some of
    them (None: nothing committed). KafkaError after ``timeout_s`` (a transaction outlives its
    timeout only while its coordinator is away)."""
    coordinator, client = consumer._coordinator, consumer._client  # aiokafka's, not public
    deadline = time.monotonic() + timeout_s
    while True:
        await coordinator.ensure_coordinator_known()
        try:
            resp = await client.send(coordinator.coordinator_id, OffsetFetchStable(coordinator.group_id, partitions),
                                     group=ConnectionGroup.COORDINATION)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            coordinator.coordinator_dead()
            resp = None
        found, wait = _read_stable(resp, coordinator) if resp is not None else ({}, True)
        if not wait:
            return found
        if time.monotonic() > deadline:
            raise KafkaError(f"offsets of {sorted(str(tp) for tp in partitions)} still held by an open "
                             f"transaction after {timeout_s:.0f} s")
        await asyncio.sleep(STABLE_RETRY_S)


def _read_stable(resp, coordinator) -> tuple[dict[TopicPartition, int | None], bool]:
    """(offsets, True when to ask again)."""
    if resp.error_code in _COORDINATOR_MOVED:
        if resp.error_code != kafka_errors.CoordinatorLoadInProgressError.errno:
            coordinator.coordinator_dead()
        return {}, True
    if resp.error_code:
        raise kafka_errors.for_code(resp.error_code)(f"offset fetch of group {coordinator.group_id}")
    found: dict[TopicPartition, int | None] = {}
    for topic, partitions, _ in resp.topics:
        for partition, offset, _, _, code, _ in partitions:
            if code == UNSTABLE_OFFSET_COMMIT or code in _COORDINATOR_MOVED:
                return {}, True
            if code:
                raise kafka_errors.for_code(code)(f"offset fetch of {topic}-{partition}")
            found[TopicPartition(topic, partition)] = offset if offset >= 0 else None
    return found, False
