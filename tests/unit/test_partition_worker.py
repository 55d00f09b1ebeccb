"""The commit step of services/common/partition_worker.py: nothing is committed unless every record
produced before it is in Kafka (at_least_once), and in exactly_once how a commit's transactions
(one per task, or the worker's one) are prepared, renewed and refused. Their effect on running
workers is proved by the fault suite (tests/faults) and on the real broker in tests/runtime; these
pin the decisions with stand-ins for the Kafka clients."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker
from services.common.worker_exit import CRASHED, WorkerExit


class Exited(Exception):
    pass


class Delivered:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.sent, self.flushes = fail, [], 0

    async def send(self, topic, value=None, key=None, partition=None):
        delivery = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, partition, delivery))
        return delivery

    async def flush(self):
        self.flushes += 1
        for n, (_, _, _, _, delivery) in enumerate(self.sent):
            if not delivery.done():
                delivery.set_exception(TimeoutError("batch expired")) if self.fail else delivery.set_result(Delivered(n))


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict] = []

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


@pytest.fixture(autouse=True)
def at_least_once(monkeypatch):
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "at_least_once")
    monkeypatch.setenv("SANDAN_TRANSACTION_SCOPE", "partition")  # the exactly_once tests below say otherwise


def worker(tmp_path, fail: bool) -> tuple[PartitionWorker, list[int], ChangelogTable]:
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        raise Exited

    table = ChangelogTable("t-changelog", tmp_path / "t")
    w = PartitionWorker("unit", ["in"], tables=[table], guard=WorkerExit(exit_process))
    w.producer, w.consumer = FakeProducer(fail), FakeConsumer()
    return w, codes, table


async def _one_batch(w: PartitionWorker, table: ChangelogTable, partition: int = 2) -> None:
    await w.send("out", b"k", b"v")
    table.put(partition, b"bucket", b"state")
    await w._send_changes()
    w._done[TopicPartition("in", partition)] = 8


def test_a_record_kafka_refused_stops_the_worker_before_the_commit(tmp_path):
    w, codes, table = worker(tmp_path, fail=True)

    async def main():
        await _one_batch(w, table)
        with pytest.raises(Exited):
            await w._commit()

    asyncio.run(main())
    assert codes == [CRASHED]
    assert w.consumer.commits == [], "the input of a lost output was committed"
    table.close()


def test_a_commit_follows_the_flush_and_records_how_far_the_changelog_went(tmp_path):
    w, codes, table = worker(tmp_path, fail=False)

    async def main():
        await _one_batch(w, table)
        await w._commit()

    asyncio.run(main())
    assert codes == [] and w.producer.flushes == 1
    assert w.consumer.commits == [{TopicPartition("in", 2): 8}]
    assert table._written == {2: 1}  # the changelog record was the second record sent
    assert [s[0] for s in w.producer.sent] == ["out", "t-changelog"] and w.producer.sent[1][3] == 2
    table.close()


def test_a_stopping_worker_commits_nothing_more(tmp_path):
    w, codes, table = worker(tmp_path, fail=False)

    async def main():
        await _one_batch(w, table)
        w._stopping = True
        await w._commit()

    asyncio.run(main())
    assert w.consumer.commits == []
    table.close()


def test_a_record_a_timer_sends_during_the_flush_waits_for_the_next_commit(tmp_path):
    w, codes, table = worker(tmp_path, fail=False)
    flush = w.producer.flush

    async def flush_while_a_tick_is_sent():
        await flush()
        await w.send("ticks", b"tick", b"1", 0)  # not flushed yet: must not count as lost

    w.producer.flush = flush_while_a_tick_is_sent

    async def main():
        await _one_batch(w, table)
        await w._commit()

    asyncio.run(main())
    assert codes == [] and len(w.consumer.commits) == 1
    assert len(w._in_flight) == 1
    table.close()


def _task_producer(end: BaseException | None):
    """A task producer as aiokafka leaves it: its transaction manager in a transaction, and, with
    ``end``, turned fatal by its sender (which keeps the error as the transaction's end)."""
    from types import SimpleNamespace

    from aiokafka.producer.transaction_manager import TransactionManager
    manager = TransactionManager("unit-2", 60_000)
    manager.set_pid_and_epoch(7, 0)
    manager.begin_transaction()
    if end is not None:
        manager.fatal_error(end)
        manager.wait_for_transaction_end().exception()  # retrieved, as the worker does
    return SimpleNamespace(_txn_manager=manager)


def test_a_fencing_met_first_by_a_producers_sender_exits_as_fenced_not_as_a_handler_failure(tmp_path, caplog):
    from aiokafka.errors import IllegalOperation, KafkaConnectionError, ProducerFenced

    async def go() -> list[int]:
        w, codes, _ = worker(tmp_path, fail=False)
        w._tasks = {1: _task_producer(None), 2: _task_producer(ProducerFenced())}
        assert isinstance(w.fencing(IllegalOperation("Not in the middle of a transaction")), ProducerFenced)

        with pytest.raises(Exited):  # the batch loop's next offsets call, after the sender's fencing
            await w.failed(IllegalOperation("Not in the middle of a transaction"))
        return codes

    assert asyncio.run(go()) == [CRASHED]
    assert any(r.levelname == "CRITICAL" and r.getMessage().startswith("fenced") for r in caplog.records)
    caplog.clear()

    async def bug() -> list[int]:  # the same error without a fenced producer is the handler's failure
        w, codes, _ = worker(tmp_path, fail=False)
        w._tasks = {2: _task_producer(None)}
        with pytest.raises(Exited):
            await w.failed(IllegalOperation("Not in the middle of a transaction"))
        return codes
    assert asyncio.run(bug()) == [CRASHED]
    assert any(r.levelname == "CRITICAL" and "failed" in r.getMessage() for r in caplog.records)
    assert not any(r.getMessage().startswith("fenced") for r in caplog.records)

    async def other() -> None:  # a sender failing for another reason is no fencing
        w, _, _ = worker(tmp_path, fail=False)
        w._tasks = {2: _task_producer(KafkaConnectionError()), 3: _task_producer(None)}
        assert w.fencing(IllegalOperation("Not in the middle of a transaction")) is None
    asyncio.run(other())


def _with_sender(producer, routine):
    from types import SimpleNamespace
    producer._sender = SimpleNamespace(sender_task=routine)
    return producer


def test_a_task_producer_whose_sender_died_and_is_not_replaced_stops_the_worker(tmp_path, caplog):
    # aiokafka's sender routine ends on an error a transaction request met (it re-raises
    # OutOfOrderSequenceNumber, ProducerFenced): that producer sends nothing more. The batch loop
    # replaces it at the task's next send or commit; still there past a commit's bound, the loop
    # is stuck on it
    from aiokafka.errors import OutOfOrderSequenceNumber

    async def died() -> None:
        raise OutOfOrderSequenceNumber()

    async def running() -> None:
        await asyncio.sleep(3600)

    async def go() -> tuple[list[int], list]:
        w, codes, _ = worker(tmp_path, fail=False)
        alive, dead = asyncio.ensure_future(running()), asyncio.ensure_future(died())
        await asyncio.sleep(0)
        w._tasks = {1: _with_sender(_task_producer(None), alive)}
        await w._watch_senders()  # every sender running: nothing happens
        assert codes == [] and w.dead_sender() is None
        w._tasks[2] = _with_sender(_task_producer(None), dead)
        w.txn_call_s = 0.05
        await w._watch_senders()  # seen dead: the batch loop has its commit's bound to replace it
        assert codes == []
        await asyncio.sleep(0.1)
        with pytest.raises(Exited):
            await w._watch_senders()
        alive.cancel()
        return codes, [w.dead_sender()]

    codes, [exc] = asyncio.run(go())
    assert codes == [CRASHED] and isinstance(exc, OutOfOrderSequenceNumber)
    assert any(r.levelname == "CRITICAL" and "OutOfOrderSequenceNumber" in r.getMessage() for r in caplog.records)


def test_a_dead_task_producer_the_batch_loop_replaced_in_time_stops_nothing(tmp_path):
    from aiokafka.errors import InvalidProducerIdMapping

    async def died() -> None:
        raise InvalidProducerIdMapping()

    async def running() -> None:
        await asyncio.sleep(3600)

    async def go() -> list[int]:
        w, codes, _ = worker(tmp_path, fail=False)
        dead, alive = asyncio.ensure_future(died()), asyncio.ensure_future(running())
        await asyncio.sleep(0)
        w.txn_call_s = 0.05
        w._tasks = {2: _with_sender(_task_producer(None), dead)}
        await w._watch_senders()
        w._tasks = {2: _with_sender(_task_producer(None), alive)}  # the renewal
        await asyncio.sleep(0.1)
        await w._watch_senders()
        alive.cancel()
        return codes

    assert asyncio.run(go()) == []


def test_a_sender_stopped_on_purpose_is_not_a_death(tmp_path):
    async def swallowing() -> None:  # as aiokafka's sender routine takes its cancellation
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return

    async def go():
        w, codes, _ = worker(tmp_path, fail=False)
        stopped = asyncio.ensure_future(asyncio.sleep(3600))
        quiet = asyncio.ensure_future(swallowing())
        await asyncio.sleep(0)
        stopped.cancel()
        quiet.cancel()
        await asyncio.gather(stopped, quiet, return_exceptions=True)
        w._tasks = {1: _with_sender(_task_producer(None), stopped), 2: _with_sender(_task_producer(None), quiet)}
        await w._watch_senders()
        return codes, w.dead_sender()

    assert asyncio.run(go()) == ([], None)


class FakeTaskProducer(FakeProducer):
    """A task's transactional producer: what the worker asks of it, in order."""
    def __init__(self, refusal: BaseException | None = None, first_offset: int = 0) -> None:
        super().__init__()
        self.refusal, self.calls, self.first_offset = refusal, [], first_offset

    async def begin_transaction(self):
        self.calls.append("begin")

    async def flush(self):
        self.calls.append("flush")
        for n, (_, _, _, _, delivery) in enumerate(self.sent):
            if not delivery.done():
                delivery.set_exception(self.refusal) if self.refusal and n == 0 else delivery.set_result(
                    Delivered(self.first_offset + n))

    async def send_offsets_to_transaction(self, offsets, group):
        self.calls.append("offsets")

    async def commit_transaction(self):
        self.calls.append("commit")

    async def start(self):
        self.calls.append("start")

    async def stop(self):
        self.calls.append("stop")


async def _task_batch_then_commit(w: PartitionWorker, table: ChangelogTable, tasks=(2,)) -> None:
    """One batch of each input partition in ``tasks`` handled in its task's transaction, then the commit."""
    from services.common import partition_worker
    for task in tasks:
        token = partition_worker._TASK.set(task)
        try:
            await _one_batch(w, table, task)
        finally:
            partition_worker._TASK.reset(token)
    await w._commit()


@pytest.mark.parametrize("refusal", ["OutOfOrderSequenceNumber", "MessageSizeTooLargeError", None])
def test_a_transaction_with_a_record_kafka_refused_is_never_committed(tmp_path, monkeypatch, caplog, refusal):
    # aiokafka commits a transaction without its refused batches (soak SOAK_SEED=20261205, chunk 36:
    # a batch expired with no leader, then every later one OutOfOrderSequenceNumber): the worker
    # looks at each delivery of the task before its offsets and commit go in. A refusal gets the
    # transaction sent again by a new producer once; refused again, the worker exits uncommitted.
    import aiokafka.errors
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w, codes, table = worker(tmp_path, fail=False)
    exc = getattr(aiokafka.errors, refusal)() if refusal else None
    task, renewed = FakeTaskProducer(exc), FakeTaskProducer(exc)
    w._tasks = {2: task}
    w._producer = lambda transactional_id: renewed

    if refusal:
        with pytest.raises(Exited):
            asyncio.run(_task_batch_then_commit(w, table))
        assert codes == [CRASHED] and task.calls == ["begin", "flush", "stop"], "a refused record's transaction went on"
        assert renewed.calls == ["start", "begin", "flush"], "the transaction sent again was committed"
        assert any(r.levelname == "CRITICAL" and refusal in r.getMessage() for r in caplog.records)
    else:
        asyncio.run(_task_batch_then_commit(w, table))
        assert codes == [] and task.calls == ["begin", "flush", "offsets", "commit"] and renewed.calls == []
        assert [s[0] for s in task.sent] == ["out", "t-changelog"] and w._task_deliveries == {}
    table.close()


def test_a_transaction_whose_producer_failed_is_sent_again_by_a_new_one_and_committed(tmp_path, monkeypatch, caplog):
    # the coordinator no longer knew the task's producer after a broker restart (soak chunks 13 and
    # 15: InvalidProducerIdMapping ended aiokafka's sender): the worker went on with a new producer
    from aiokafka.errors import InvalidProducerIdMapping
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w, codes, table = worker(tmp_path, fail=False)
    task, renewed = FakeTaskProducer(InvalidProducerIdMapping()), FakeTaskProducer(first_offset=100)
    w._tasks = {2: task}
    w._producer = lambda transactional_id: renewed

    asyncio.run(_task_batch_then_commit(w, table))
    assert codes == []
    assert task.calls == ["begin", "flush", "stop"]
    assert renewed.calls == ["start", "begin", "flush", "offsets", "commit"]
    assert [(s[0], s[1], s[2]) for s in renewed.sent] == [(s[0], s[1], s[2]) for s in task.sent]
    assert w._tasks == {2: renewed} and w._txn_records == {} and w._renewed == set()
    assert table._written == {2: 101} and table.get(b"bucket", 2) == b"state", "the changelog offset is the new delivery's"
    assert any("a new producer sends its transaction again" in r.getMessage() for r in caplog.records)
    table.close()


def test_a_fenced_record_leaves_as_fenced_not_as_a_lost_output(tmp_path, monkeypatch):
    from aiokafka.errors import ProducerFenced
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w, codes, table = worker(tmp_path, fail=False)
    task = FakeTaskProducer(ProducerFenced())
    w._tasks = {2: task}

    with pytest.raises(ProducerFenced):  # the batch loop then leaves through on_fenced
        asyncio.run(_task_batch_then_commit(w, table))
    assert codes == [] and "commit" not in task.calls
    table.close()


@pytest.mark.parametrize("seconds", ["0", "601"])
def test_a_delivery_timeout_kafka_cannot_keep_is_refused_at_start(tmp_path, monkeypatch, seconds):
    """Past 600 s the transaction timeout it implies is near Kafka's own bound (15 min) and the
    producer would be refused at start; 0 gives up on every record at once."""
    monkeypatch.setenv("SANDAN_KAFKA_DELIVERY_TIMEOUT", seconds)
    with pytest.raises(SystemExit, match=f"SANDAN_KAFKA_DELIVERY_TIMEOUT={seconds} must be between 1 and 600"):
        PartitionWorker("unit", ["in"], tables=[ChangelogTable("t-changelog", tmp_path / "t")])


def test_the_producers_keep_a_record_and_its_transaction_for_the_delivery_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDAN_KAFKA_DELIVERY_TIMEOUT", "200")
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w = PartitionWorker("unit", ["in"], tables=[ChangelogTable("t-changelog", tmp_path / "t")])

    async def made() -> tuple[float, int, float]:
        producer = w._producer("unit-0")
        batch_ttl = producer._message_accumulator._batch_ttl  # aiokafka's expiry of a leaderless batch
        return batch_ttl, producer._txn_manager.transaction_timeout_ms, w.txn_call_s

    batch_ttl, transaction_ms, call_s = asyncio.run(made())
    assert batch_ttl == 200
    assert transaction_ms > 200_000 and call_s > 200


class HeldCommitProducer(FakeTaskProducer):
    """A task's producer whose commit is answered only when the test lets it go."""
    def __init__(self, release: asyncio.Event, asked: list[int], task: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.release, self.asked, self.task = release, asked, task

    async def commit_transaction(self):
        self.asked.append(self.task)
        await self.release.wait()
        self.calls.append("commit")


def test_the_tasks_of_one_commit_are_committed_side_by_side(tmp_path, monkeypatch):
    # each task's commit is a round trip of its own producer: one after another they held the
    # batch loop for all of them, so both commits must be asked for before either is answered
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w, codes, table = worker(tmp_path, fail=False)

    async def main() -> list[int]:
        release, asked = asyncio.Event(), []
        w._tasks = {task: HeldCommitProducer(release, asked, task) for task in (1, 2)}
        committing = asyncio.ensure_future(_task_batch_then_commit(w, table, (1, 2)))
        for _ in range(100):
            await asyncio.sleep(0)
            if len(asked) == 2:
                break
        both_waiting = sorted(asked)
        release.set()
        await asyncio.wait_for(committing, 5)
        return both_waiting

    assert asyncio.run(main()) == [1, 2], "a task's commit waited for another's answer"
    assert codes == [] and all(p.calls == ["begin", "flush", "offsets", "commit"] for p in w._tasks.values())
    assert w._open == set() and w._txn_records == {}
    table.close()


def test_a_task_sent_again_beside_another_keeps_each_tasks_changelog_offsets(tmp_path, monkeypatch):
    # task 1's producer failed and a new one sends its transaction again while task 2 commits:
    # only task 1's changelog deliveries are replaced by the new ones
    from aiokafka.errors import InvalidProducerIdMapping
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w, codes, table = worker(tmp_path, fail=False)
    failed, renewed, other = (FakeTaskProducer(InvalidProducerIdMapping()), FakeTaskProducer(first_offset=100),
                              FakeTaskProducer(first_offset=50))
    w._tasks = {1: failed, 2: other}
    w._producer = lambda transactional_id: renewed

    asyncio.run(_task_batch_then_commit(w, table, (1, 2)))
    assert codes == []
    assert failed.calls == ["begin", "flush", "stop"] and renewed.calls == ["start", "begin", "flush", "offsets", "commit"]
    assert other.calls == ["begin", "flush", "offsets", "commit"]
    assert table._written == {1: 101, 2: 51}, "a changelog offset came from the other task's delivery"
    table.close()


def test_a_task_refused_twice_stops_the_worker_while_the_other_commits(tmp_path, monkeypatch):
    # transactions of different tasks are independent: the other's commit stands, the refused one
    # stays uncommitted and the worker exits before anything later is handled
    import aiokafka.errors
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    w, codes, table = worker(tmp_path, fail=False)
    refusal = aiokafka.errors.OutOfOrderSequenceNumber()
    refused, renewed, other = FakeTaskProducer(refusal), FakeTaskProducer(refusal), FakeTaskProducer()
    w._tasks = {1: refused, 2: other}
    w._producer = lambda transactional_id: renewed

    with pytest.raises(Exited):
        asyncio.run(_task_batch_then_commit(w, table, (1, 2)))
    assert codes == [CRASHED]
    assert "commit" not in refused.calls and "commit" not in renewed.calls
    assert other.calls == ["begin", "flush", "offsets", "commit"]
    table.close()


class WorkerScopeProducer(FakeTaskProducer):
    """The worker's one transactional producer in scope worker: the offsets and the member it sends."""
    def __init__(self, refusal: BaseException | None = None, offsets_refusal: BaseException | None = None,
                 first_offset: int = 0) -> None:
        super().__init__(refusal, first_offset)
        from types import SimpleNamespace
        self._sender, self.offsets, self.offsets_refusal = SimpleNamespace(), [], offsets_refusal

    async def send_offsets_to_transaction(self, offsets, group):
        self.calls.append("offsets")
        self.offsets.append((dict(offsets), self._sender.sandan_member))
        if self.offsets_refusal is not None:
            raise self.offsets_refusal

    async def abort_transaction(self):
        self.calls.append("abort")


class GroupMember:
    def __init__(self) -> None:
        self.generation, self.member_id, self._group_instance_id, self.rejoins = 7, "member-a", "unit-0", 0

    def request_rejoin(self) -> None:
        self.rejoins += 1


def worker_scope(tmp_path, monkeypatch, producer: WorkerScopeProducer, renewed: WorkerScopeProducer | None = None,
                 owned=(1, 2, 3)):
    from services.common import partition_worker
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "exactly_once")
    monkeypatch.setenv("SANDAN_TRANSACTION_SCOPE", "worker")
    w, codes, table = worker(tmp_path, fail=False)
    w.consumer._coordinator = GroupMember()
    w.consumer.pause = lambda *tps: None
    w.consumer.assignment = lambda: {TopicPartition("in", p) for p in owned}
    w._tasks = {partition_worker.WORKER_LANE: producer}
    w._producer = lambda transactional_id: renewed
    return w, codes, table


def test_scope_worker_commits_every_task_in_one_transaction_with_the_group_member(tmp_path, monkeypatch):
    # one transaction for the worker's tasks; its offsets name the member and generation, and
    # carry every owned partition's offset (3's from the commit before) so each commit is checked
    producer = WorkerScopeProducer()
    w, codes, table = worker_scope(tmp_path, monkeypatch, producer)
    w._positions = {TopicPartition("in", 3): 40, TopicPartition("in", 9): 5}  # 9: no longer owned

    asyncio.run(_task_batch_then_commit(w, table, (1, 2)))
    assert codes == [] and producer.calls == ["begin", "flush", "offsets", "commit"]
    (offsets, member), = producer.offsets
    assert offsets == {TopicPartition("in", 1): 8, TopicPartition("in", 2): 8, TopicPartition("in", 3): 40}
    assert member == (7, "member-a", "unit-0")
    assert [(s[0], s[3]) for s in producer.sent] == [("out", None), ("t-changelog", 1), ("out", None),
                                                     ("t-changelog", 2)]
    assert table._written == {1: 1, 2: 3}, "each task's changelog offset is its own record's"
    assert w._positions[TopicPartition("in", 1)] == 8
    table.close()


def test_scope_worker_offsets_the_group_refused_abort_drop_the_work_and_rejoin(tmp_path, monkeypatch):
    # the group moved on (a session expired): the transaction is aborted, everything of it the
    # worker keeps is dropped and it joins the group again, to be assigned and restored anew
    from services.common.group_transactions import GroupFenced
    producer = WorkerScopeProducer(offsets_refusal=GroupFenced("offsets refused by the group coordinator"))
    w, codes, table = worker_scope(tmp_path, monkeypatch, producer)
    lost, paused = [], []
    w.on_lost.append(lambda: lost.append(True))
    w.consumer.pause = lambda *tps: paused.extend(tps)
    w.partitions = frozenset({1, 2, 3})
    w._positions = {TopicPartition("in", 3): 40}
    table.put(3, b"committed-before", b"x")  # a write of an earlier commit, already in its store
    table.changes()
    table.save_offsets()

    asyncio.run(_task_batch_then_commit(w, table, (1,)))
    assert codes == [] and producer.calls == ["begin", "flush", "offsets", "abort"], "left open it holds readers"
    assert lost == [True] and w.consumer._coordinator.rejoins == 1
    assert w.partitions == frozenset() and sorted(tp.partition for tp in paused) == [1, 2, 3]
    assert w._positions == {} and w._done == {} and w._open == set()
    assert table.held() == set() and table._unsent == {} and table._sent == {}, "an aborted write is still read"
    table.close()


def test_scope_worker_whose_instance_id_was_taken_or_whose_abort_failed_leaves_fenced(tmp_path, monkeypatch):
    # FENCED_INSTANCE_ID: another process runs as this worker; rejoining would fence it in turn.
    # An abort that failed: the producer is not trusted with another transaction.
    from services.common.group_transactions import GroupFenced
    for refusal, abort_fails in ((GroupFenced("FENCED_INSTANCE_ID", rejoin=False), False), (GroupFenced(), True)):
        producer = WorkerScopeProducer(offsets_refusal=refusal)
        if abort_fails:
            async def abort_transaction(producer=producer):
                from aiokafka.errors import KafkaConnectionError
                producer.calls.append("abort")
                raise KafkaConnectionError("coordinator away")
            producer.abort_transaction = abort_transaction
        w, codes, table = worker_scope(tmp_path, monkeypatch, producer)
        lost = []
        w.on_lost.append(lambda: lost.append(True))

        with pytest.raises(GroupFenced):
            asyncio.run(_task_batch_then_commit(w, table, (1,)))
        assert producer.calls == ["begin", "flush", "offsets", "abort"] and lost == []
        assert w.consumer._coordinator.rejoins == 0
        assert w.fencing(refusal) is not None  # the batch loop exits as fenced
        table.close()


def test_scope_worker_without_a_generation_sends_no_offsets_and_rejoins(tmp_path, monkeypatch):
    producer = WorkerScopeProducer()
    w, codes, table = worker_scope(tmp_path, monkeypatch, producer)
    w.consumer._coordinator.generation = -1  # aiokafka's reset after a heartbeat the group refused
    w.consumer.pause = lambda *tps: None

    asyncio.run(_task_batch_then_commit(w, table, (1,)))
    assert producer.offsets == [] and producer.calls == ["begin", "flush", "abort"]
    assert codes == [] and w.consumer._coordinator.rejoins == 1
    table.close()


def test_scope_worker_renewal_sends_every_task_of_the_transaction_again(tmp_path, monkeypatch):
    from aiokafka.errors import InvalidProducerIdMapping
    failed, renewed = WorkerScopeProducer(InvalidProducerIdMapping()), WorkerScopeProducer(first_offset=100)
    w, codes, table = worker_scope(tmp_path, monkeypatch, failed, renewed)

    asyncio.run(_task_batch_then_commit(w, table, (1, 2)))
    assert codes == [] and failed.calls == ["begin", "flush", "stop"]
    assert renewed.calls == ["start", "begin", "flush", "offsets", "commit"]
    assert len(renewed.sent) == 4 and table._written == {1: 101, 2: 103}
    table.close()
