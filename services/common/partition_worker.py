"""A stream worker on aiokafka alone: batches of records in, outputs and table changes out.

A fetch is handed over as one list, and table changes go out with the outputs as plain
sends: no per-record message object, future or acknowledgement (a framework's per-record
machinery cost more CPU than sandan's own work, bench/RESULTS.md). It gives:

* exactly-once (``SANDAN_PROCESSING_GUARANTEE=exactly_once``, the default): the records of one
  input partition number (its "task": the same number of every co-partitioned input) are
  handled together, and their outputs, table changes and input offsets go to Kafka in one
  transaction, committed every ``SANDAN_COMMIT_INTERVAL_MS``. ``SANDAN_TRANSACTION_SCOPE``
  says whose: ``partition``, the task's own transactional producer (id ``<group>-<partition>``),
  which the task's next owner starts before it reads anything (Kafka aborts the old owner's open
  transaction and refuses it every later write: fenced); ``worker``, one transaction for all the
  worker's tasks (id ``<group>-worker-<instance>``), its offsets sent with the worker's group
  generation and refused once the group has moved on (``group_transactions``), the next owner
  reading them stable. Either way a worker that lost its partitions cannot write for them.
  Readers read committed. In scope worker a refusal because the group moved on without the
  worker (its session expired: a pause, a network cut) is not an exit: the transaction is
  aborted, everything handled since the last commit is dropped, and the worker joins its group
  again (``_lose_all``), as Kafka Streams does with a task migrated away.
* at-least-once (``at_least_once``): at each commit the producer is flushed (outputs and changelog
  records), then the offsets of the records processed before the flush are committed;
* either way, an output Kafka refuses, or does not take within ``SANDAN_KAFKA_DELIVERY_TIMEOUT``,
  makes the worker exit (70) before its input is committed; in exactly_once a task's producer
  that fails before its commit is asked for (a refused record, a sender ended by
  InvalidProducerIdMapping after a broker restart) is first replaced once and its open
  transaction sent again by the new one (``_renew_task``);
  records of timers (ticks, warnings) go through a plain producer, flushed at each commit;
* static group membership (a restarted worker takes its old place without a rebalance), and
  the range assignor, so a worker gets the same partition numbers of every input topic
  (co-partitioned inputs meet in one worker);
* SIGTERM/SIGINT flush and exit (0) without committing; a handler that raises makes the worker
  exit (70) before anything of its batch is committed;
* one table store per input partition, opened, checked and brought up to date from its
  changelog when the partition is assigned (``changelog_table``), in a task beside the batch
  loop: a partition's records are paused until its stores are restored, the others keep
  flowing and the loop keeps polling (the group's deadline); stores of revoked partitions are
  closed and swept after their grace;
* co-partitioned inputs read in step (``aligned``, ``input_alignment``): with a backlog, an input
  partition more than ``SANDAN_STREAM_ALIGN_MS`` of record time ahead of another of its task
  that is catching up is paused until that one is near;
* ``sandan_consumer_lag`` per owned input partition;
* a rebalance gone through, not died on: when partitions are taken away, the batch in hand
  is finished, everything it produced is flushed and its offsets committed before the
  callback returns, so the next owner starts where this one stopped; records fetched for a
  partition that has left meanwhile are dropped unhandled (their offsets were not committed,
  the new owner takes them); partitions assigned are restored before their first record.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, ProducerFenced

from services.common import aiokafka_fixes, config, group_transactions, kafka_security, streaming
from services.common.acked_producer import RENEWALS
from services.common.changelog_table import ChangelogTable
from services.common.group_transactions import GroupFenced
from services.common.input_alignment import Alignment
from services.common.worker_exit import WorkerExit

log = logging.getLogger("sandan.worker")
aiokafka_fixes.apply()  # before any producer exists
group_transactions.apply()

Handler = Callable[[list], Awaitable[None]]


class OutputRefused(Exception):
    """A record of a task's open transaction was not taken by Kafka: that transaction must not commit."""

LAG_INTERVAL_S = 5.0
SENDER_CHECK_S = 2.0
# Kafka's own bound on a transaction's timeout (broker transaction.max.timeout.ms, 15 min by default)
DELIVERY_TIMEOUT_MAX_S = 600
GUARANTEES = ("exactly_once", "at_least_once")
SCOPES = ("partition", "worker")
WORKER_LANE = -1  # scope worker: the one transaction every owned partition's records join
# the task (input partition number) whose records the batch loop is handling: its sends join
# that task's transaction; a timer's task has none
_TASK: contextvars.ContextVar[int | None] = contextvars.ContextVar("sandan_task", default=None)


class _Listener(ConsumerRebalanceListener):
    """aiokafka awaits these from its coordinator task, concurrently with the batch loop."""

    def __init__(self, worker: PartitionWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        self.worker.assigned(assigned)


class PartitionWorker:
    """``name``: the service (group ``<prefix>sandan-<name>``); ``inputs``: full topic names;
    ``aligned``: those of the inputs whose partitions of one task are read in step by record time."""

    def __init__(self, name: str, inputs: Sequence[str], *, tables: Sequence[ChangelogTable] = (),
                 guard: WorkerExit | None = None, aligned: Sequence[str] = ()) -> None:
        self.name = name
        self.inputs = tuple(inputs)
        self.tables = tuple(tables)
        self.guard = guard or WorkerExit()
        self.group = streaming.app_id(name)
        self.instance = streaming.worker_instance_id(self.group)
        self.bootstrap = config.get("SANDAN_KAFKA_BOOTSTRAP")
        self.batch_size = config.get_int("SANDAN_STREAM_BATCH")
        self.batch_wait_ms = config.get_int("SANDAN_STREAM_BATCH_WAIT_MS")
        self.guarantee = config.get("SANDAN_PROCESSING_GUARANTEE").strip().lower()
        if self.guarantee not in GUARANTEES:
            raise SystemExit(f"setting SANDAN_PROCESSING_GUARANTEE={self.guarantee!r} must be one of "
                             f"{', '.join(GUARANTEES)}")
        self.exactly_once = self.guarantee == "exactly_once"
        self.scope = config.get("SANDAN_TRANSACTION_SCOPE").strip().lower()
        if self.scope not in SCOPES:
            raise SystemExit(f"setting SANDAN_TRANSACTION_SCOPE={self.scope!r} must be one of {', '.join(SCOPES)}")
        self.commit_interval_s = max(config.get_int("SANDAN_COMMIT_INTERVAL_MS"), 10) / 1000
        # aiokafka gives up on a record whose partition has had no leader for its request timeout
        # (40 s by default, shorter than a broker restart on a loaded machine): that bound is this one
        self.delivery_timeout_s = config.get_int("SANDAN_KAFKA_DELIVERY_TIMEOUT")
        if not 1 <= self.delivery_timeout_s <= DELIVERY_TIMEOUT_MAX_S:
            raise SystemExit(f"setting SANDAN_KAFKA_DELIVERY_TIMEOUT={self.delivery_timeout_s} must be between 1 "
                             f"and {DELIVERY_TIMEOUT_MAX_S} seconds")
        # a flush, the offsets or a commit answered by nobody past its records' own bound never will be
        self.txn_call_s = self.delivery_timeout_s + 10.0
        # the coordinator must not abort a transaction whose records are still within their bound
        self.txn_timeout_ms = max(60_000, int(self.commit_interval_s * 1000) + self.delivery_timeout_s * 1000 + 30_000)
        skew_ms = config.get_int("SANDAN_STREAM_ALIGN_MS")
        self.alignment = Alignment(aligned, skew_ms) if aligned and skew_ms > 0 else None
        # made in ``run`` (aiokafka wants a running loop): the plain producer (timers' records, and
        # everything in at_least_once) and, in exactly_once, the transactional producers by lane
        # (each owned task's, or the worker's one under WORKER_LANE)
        self.producer: AIOKafkaProducer | None = None
        self._tasks: dict[int, AIOKafkaProducer] = {}
        self._open: set[int] = set()  # tasks with a transaction begun and not yet committed
        self.consumer: AIOKafkaConsumer | None = None
        # input partition numbers this worker owns and can handle (stores restored)
        self.partitions: frozenset[int] = frozenset()
        self._restoring: asyncio.Task | None = None
        self._restore_error: BaseException | None = None
        self._done: dict[TopicPartition, int] = {}  # next offset to commit, per input partition
        # scope worker: the offsets committed, per owned input partition, sent again with every
        # transaction so that each one is checked against the group's generation
        self._positions: dict[TopicPartition, int] = {}
        self._timers: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        # called before each commit, in the batch loop: state a service keeps back (write-behind
        # caches) goes into its tables then, and so onto their changelogs before the offsets
        self.before_commit: list[Callable[[], object]] = []
        # called when the work since the last commit was dropped (``_lose_all``): state a service
        # keeps of records handled since then goes too, or is rebuilt from the tables
        self.on_lost: list[Callable[[], object]] = []
        self._stopping = False
        self._in_flight: list[asyncio.Future] = []  # the plain producer's deliveries since the last flush
        # exactly_once: each open transaction's deliveries, looked at before it commits (aiokafka
        # commits a transaction whose batch was refused, without that batch)
        self._task_deliveries: dict[int, list[asyncio.Future]] = {}
        # exactly_once: each open transaction's records, sent again by a new producer when the
        # task's producer fails before its commit was asked for (``_renew_task``)
        self._txn_records: dict[int, list[_Sent]] = {}
        self._renewed: set[int] = set()  # tasks whose producer was replaced since their last commit
        self._seen_dead: dict[int, tuple[AIOKafkaProducer, float]] = {}  # task -> its dead producer, since when
        self._changelog_in_flight: list[tuple[ChangelogTable, int, asyncio.Future]] = []
        self._lag_shown: set[TopicPartition] = set()
        self._lock = asyncio.Lock()  # a batch, a commit and a revocation never interleave

    # --- what a service adds ----------------------------------------------------------------
    def timer(self, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` every ``interval_s`` seconds while the worker runs (not in the batch loop)."""
        self._timers.append((interval_s, step))

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
                   ) -> asyncio.Future:
        """Hand a record to the producer. Its delivery is looked at after the next flush, before
        the commit it belongs to (a refusal stops the worker there): no callback per record,
        which cost as much as the send itself."""
        task = _TASK.get() if self.exactly_once else None
        if task is None:
            delivery = await self.producer.send(topic, value=value, key=key, partition=partition)
            self._in_flight.append(delivery)
            return delivery
        return await self._send_in_transaction(self._lane(task), _Sent(topic, key, value, partition, None))

    def _lane(self, task: int) -> int:
        """The transaction a task's records join: its own, or the worker's one."""
        return WORKER_LANE if self.scope == "worker" else task

    async def _send_in_transaction(self, lane: int, record: _Sent) -> asyncio.Future:
        producer = await self._transaction(lane)
        delivery = await producer.send(record.topic, value=record.value, key=record.key, partition=record.partition)
        self._task_deliveries.setdefault(lane, []).append(delivery)
        self._txn_records.setdefault(lane, []).append(record)
        if record.table is not None:  # a table change goes to the changelog partition of its task
            self._changelog_in_flight.append((record.table, record.partition, delivery))
        return delivery

    async def deliver_outputs(self) -> bool:
        """For a service that wants its outputs in Kafka before it changes its state. at_least_once:
        flushes the producer (True: the deliveries so far are settled, look at them); exactly_once:
        nothing to do (False), the task's transaction makes outputs and state visible together."""
        if self.exactly_once:
            return False
        await self.producer.flush()
        return True

    async def _transaction(self, task: int) -> AIOKafkaProducer:
        """The task's producer, inside a transaction (begun at its first record after a commit).
        A producer that has failed for good, fenced aside, is replaced first (``_renew_task``)."""
        producer = self._tasks.get(task)
        if producer is None:  # only owned, started tasks have records to handle or changes to send
            raise RuntimeError(f"no transactional producer for {_lane_name(task)}: it is not this worker's")
        failure = _failure(producer)
        if failure is not None:
            if isinstance(failure, ProducerFenced):
                raise failure
            return await self._renew_task(task, failure)
        if task not in self._open:
            await producer.begin_transaction()
            self._open.add(task)
        return producer

    # --- the group ---------------------------------------------------------------------------
    async def revoked(self, revoked) -> None:
        async with self._lock:  # the batch in hand finishes first
            if revoked:
                log.info("%s: partitions %s taken away; committing what was handled", self.group,
                         sorted({tp.partition for tp in revoked}))
            try:
                await self._commit()
            except Exception as exc:  # in aiokafka's coordinator task: the batch loop would not see it
                fenced = self.fencing(exc)
                if fenced is not None:
                    self.guard.on_fenced(fenced)
                raise
            await self._stop_restoring()
            self.partitions = frozenset()
            if self.alignment is not None:
                self.alignment.forget()  # what is assigned next starts unheld (aiokafka resets pauses)
            for table in self.tables:
                table.release({tp.partition for tp in revoked})
            for tp in revoked:
                self._positions.pop(tp, None)
            await self._close_tasks({tp.partition for tp in revoked})

    def assigned(self, assigned) -> None:
        numbers = frozenset(tp.partition for tp in assigned)
        log.info("%s: partitions %s assigned", self.group, sorted(numbers))
        if not self.tables and not self.exactly_once:
            self.partitions = numbers
            if self.alignment is not None:
                self.alignment.started(assigned, time.monotonic())
            return
        # a store kept across the rebalance is checked again: it has nothing or little to read
        self.partitions = frozenset()
        if assigned:
            self.consumer.pause(*assigned)
        self._restoring = asyncio.ensure_future(self._restore(numbers))

    def _producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        batch_bytes = config.get_int("SANDAN_KAFKA_BATCH_BYTES")
        delivery_ms = self.delivery_timeout_s * 1000
        return AIOKafkaProducer(
            # idempotent: a retry after a lost acknowledgement (a leader that died) writes no duplicate
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            transactional_id=transactional_id, request_timeout_ms=delivery_ms,
            transaction_timeout_ms=self.txn_timeout_ms,
            linger_ms=config.get_int("SANDAN_KAFKA_LINGER_MS"),
            max_batch_size=batch_bytes, max_request_size=max(batch_bytes * 4, 1_000_000),
            **kafka_security.aiokafka_kwargs())

    def _transactional_id(self, lane: int) -> str:
        """A task's id is its partition's (its next owner fences it); the worker's one is its
        instance's (the same worker started again fences its previous run)."""
        return f"{self.group}-worker-{self.instance}" if lane == WORKER_LANE else f"{self.group}-{lane}"

    async def _start_tasks(self, tasks: frozenset[int]) -> None:
        """exactly_once: the transactional producer of each task (or the worker's one), started
        before any record of the tasks is read. In scope partition, starting it fences the task's
        earlier producer (Kafka aborts its open transaction and refuses its later writes); then
        the input offsets are read again, now that no transaction of the old owner can still
        commit some. In scope worker they are read stable (``group_transactions``): Kafka answers
        once no transaction holding offsets of the group's partitions is open."""
        new = sorted({self._lane(t) for t in tasks} - set(self._tasks))
        producers = {lane: self._producer(self._transactional_id(lane)) for lane in new}
        try:
            await asyncio.gather(*(producer.start() for producer in producers.values()))
        except BaseException:
            await asyncio.gather(*(producer.stop() for producer in producers.values()), return_exceptions=True)
            raise
        self._tasks.update(producers)
        if self.scope == "worker":
            reread = [tp for tp in self.consumer.assignment() if tp.partition in tasks]
            committed = await group_transactions.committed_stable(self.consumer, reread, timeout_s=self._stable_wait_s())
        else:
            reread = [tp for tp in self.consumer.assignment() if tp.partition in producers]
            committed = {tp: await self.consumer.committed(tp) for tp in reread}
        for tp in reread:
            if committed.get(tp) is not None:
                self.consumer.seek(tp, committed[tp])

    def _stable_wait_s(self) -> float:
        """Longest an open transaction can hold offsets: Kafka aborts it past its timeout."""
        return self.txn_timeout_ms / 1000 + 30.0

    async def _committed(self, tp: TopicPartition) -> int | None:
        if self.scope == "worker" and self.exactly_once:
            found = await group_transactions.committed_stable(self.consumer, [tp], timeout_s=self._stable_wait_s())
            return found.get(tp)
        return await self.consumer.committed(tp)

    async def _close_tasks(self, tasks: set[int]) -> None:
        lanes = {self._lane(t) for t in tasks} - {WORKER_LANE}  # the worker's transaction outlives a rebalance
        closing = {lane: self._tasks.pop(lane) for lane in sorted(lanes) if lane in self._tasks}
        for lane in closing:
            self._open.discard(lane)
            self._task_deliveries.pop(lane, None)
            self._txn_records.pop(lane, None)
            self._renewed.discard(lane)
        await asyncio.gather(*(producer.stop() for producer in closing.values()), return_exceptions=True)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group, group_instance_id=self.instance,
            enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed",
            session_timeout_ms=config.get_int("SANDAN_SESSION_TIMEOUT") * 1000, heartbeat_interval_ms=2000,
            fetch_max_wait_ms=config.get_int("SANDAN_FETCH_MAX_WAIT_MS"),
            partition_assignment_strategy=(RangePartitionAssignor,), **kafka_security.aiokafka_kwargs())

    # --- running -------------------------------------------------------------------------------
    async def run(self, handle: Handler) -> None:
        """Until a signal or an exit (``worker_exit``); ``handle`` gets each fetched batch (a list of
        aiokafka ConsumerRecords, in offset order per partition)."""
        self.producer, self.consumer = self._producer(), self._consumer()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # after the producer exists: a stop flushes it
            loop.add_signal_handler(sig, self._stop)
        try:
            await self.producer.start()
            self.consumer.subscribe(list(self.inputs), listener=_Listener(self))
            await self.consumer.start()
        except KafkaError as exc:
            self.guard.on_start_failed(exc)
            return
        if self.exactly_once and self.scope == "worker":
            streaming.lost_counter()  # shown as 0 from the start, not only after a first rejoin
        tasks = [asyncio.ensure_future(self._every(interval, step)) for interval, step in self._timers]
        tasks.append(asyncio.ensure_future(self._every(LAG_INTERVAL_S, self._measure_lag)))
        tasks.append(asyncio.ensure_future(self._every(SENDER_CHECK_S, self._watch_senders)))
        tasks.append(asyncio.ensure_future(self._every(LAG_INTERVAL_S, self._sweep_stores)))
        log.info("%s: worker %s consuming %s (%s%s)", self.group, self.instance, ", ".join(self.inputs),
                 self.guarantee, f", a transaction per {self.scope}" if self.exactly_once else "")
        try:
            await self._loop(handle)
        except Exception as exc:  # noqa: BLE001 - a bug or an unexpected fault: start again from the commit
            await self.failed(exc)
        finally:
            for task in tasks:
                task.cancel()
            await self._stop_restoring()

    async def failed(self, exc: BaseException) -> None:
        """The batch loop raised: a fencing exits as the fencing, anything else as a handler
        failure (both 70; the log says which)."""
        fenced = self.fencing(exc)
        if fenced is not None:
            self.guard.on_fenced(fenced)
        else:
            await self.guard.on_handler_error(self, exc)

    def fencing(self, exc: BaseException) -> BaseException | None:
        """The fencing behind ``exc``: itself, or, when a task's producer met it in its sender
        first, the ProducerFenced aiokafka keeps as the transaction's end (it then refuses later
        sends, offsets or commits with an IllegalOperation that does not say why)."""
        if isinstance(exc, ProducerFenced):
            return exc
        for producer in self._tasks.values():
            failure = _failure(producer)
            if isinstance(failure, ProducerFenced):
                return failure
        return None

    def dead_sender(self) -> BaseException | None:
        """What ended a producer's sender, if one has. aiokafka's sender routine stops on an error a
        transaction request met (ProducerFenced, OutOfOrderSequenceNumber, an authorization
        failure): that producer then fails every record it holds and sends nothing more, and a
        send waiting for room in its buffer waits for ever."""
        for producer in [*self._tasks.values(), self.producer]:
            exc = _sender_end(producer)
            if exc is not None:
                return exc
        return None

    async def _watch_senders(self) -> None:
        """A timer, outside the batch loop (which may be the one waiting on that producer). A task's
        producer is replaced by the batch loop at the task's next send or commit (``_transaction``):
        one still dead a commit's bound after it was seen means the loop is stuck on it."""
        now = time.monotonic()
        seen, self._seen_dead = self._seen_dead, {}
        for task, producer in [*self._tasks.items(), (None, self.producer)]:
            exc = _sender_end(producer)
            if exc is None:
                continue
            fenced = self.fencing(exc)
            if fenced is not None:
                self.guard.on_fenced(fenced)
            if task is None:
                self.guard.on_output_lost(exc)
            was, since = seen.get(task, (None, now))
            since = since if was is producer else now
            if now - since > self.txn_call_s:
                self.guard.on_output_lost(exc)
            self._seen_dead[task] = (producer, since)

    def _stop(self) -> None:
        self._stopping = True  # nothing is committed from now on
        asyncio.ensure_future(self.guard.on_stop_signal(self._flush_and_abort))

    async def _flush_and_abort(self) -> None:
        """A stop: once the batch in hand is done (nothing is handled after it), the plain
        producer's records go out and open transactions are aborted (their input was not
        committed: it is handled again)."""
        async with self._lock:
            await self.producer.flush()
            for task in sorted(self._open):
                try:
                    await self._tasks[task].abort_transaction()
                except KafkaError as exc:
                    log.warning("%s: transaction of %s not aborted (%s); Kafka ends it", self.group, _lane_name(task), exc)
            self._open.clear()
            self._task_deliveries.clear()
            self._txn_records.clear()

    async def _loop(self, handle: Handler) -> None:
        next_commit = time.monotonic() + self.commit_interval_s
        while True:
            fetched = await self.consumer.getmany(timeout_ms=self.batch_wait_ms, max_records=self.batch_size)
            async with self._lock:
                if self._stopping:  # the stop signal's flush takes over; this process ends with it
                    continue
                if self._restore_error is not None:
                    raise self._restore_error
                fetched = await self._ready_records(fetched)
                if self.exactly_once:  # a task's records together: their sends join its transaction
                    tasks: dict[int, list] = {}
                    for tp, batch in fetched.items():
                        tasks.setdefault(tp.partition, []).extend(batch)
                    for task, records in sorted(tasks.items()):
                        token = _TASK.set(task)
                        try:
                            await handle(records)
                        finally:
                            _TASK.reset(token)
                        await self._send_changes()
                else:
                    records = [r for batch in fetched.values() for r in batch]
                    if records:
                        await handle(records)
                        await self._send_changes()
                for tp, batch in fetched.items():
                    self._done[tp] = batch[-1].offset + 1
                if self.alignment is not None:
                    await self._align(fetched)
                if time.monotonic() >= next_commit:
                    await self._commit()
                    next_commit = time.monotonic() + self.commit_interval_s

    async def _align(self, fetched: dict) -> None:
        """Hold the aligned inputs that ran ahead; let go of those no longer ahead. Only partitions
        with restored stores are let go (a restoring one stays paused until it is ready)."""
        now = time.monotonic()
        for tp, batch in fetched.items():
            self.alignment.read(tp, batch[-1].timestamp, now)
        owned = [tp for tp in self.consumer.assignment()
                 if tp.partition in self.partitions and tp.topic in self.alignment.topics]
        behind: dict[TopicPartition, bool] = {}
        for tp in owned:
            end = self.consumer.last_stable_offset(tp)
            end = self.consumer.highwater(tp) if end is None else end
            try:
                # more than a batch left: a backlog, not the records that came since the last fetch
                behind[tp] = end is not None and end - await self.consumer.position(tp) > self.batch_size
            except IllegalStateError:  # taken away meanwhile
                behind[tp] = False
        before = self.alignment.held
        hold = self.alignment.to_hold(owned, behind.__getitem__, now)
        if hold:
            self.consumer.pause(*hold)
            for tp in hold - before:
                streaming.held_counter().labels(tp.topic).inc()
        released = [tp for tp in before - hold if tp in behind]
        if released:
            self.consumer.resume(*released)

    async def _ready_records(self, fetched: dict) -> dict:
        """The fetched records this worker may handle now. A partition taken away meanwhile is its
        new owner's; one whose stores are not restored yet (fetched before a rebalance) is read
        again from there, or from its committed offset if that is earlier."""
        owned = self.consumer.assignment()
        ready = {}
        for tp, batch in fetched.items():
            if tp not in owned:
                continue
            if tp.partition in self.partitions:
                ready[tp] = batch
                continue
            committed = await self._committed(tp)
            self.consumer.seek(tp, batch[0].offset if committed is None else min(committed, batch[0].offset))
        return ready

    async def _restore(self, partitions: frozenset[int]) -> None:
        """Every table's stores of ``partitions``; each partition is resumed as soon as all are ready."""
        waiting = {p: len(self.tables) for p in partitions}

        def ready(partition: int) -> None:
            waiting[partition] -= 1
            if waiting[partition] <= 0:
                self.partitions = self.partitions | {partition}
                tps = [tp for tp in self.consumer.assignment() if tp.partition == partition]
                if tps:
                    self.consumer.resume(*tps)
                    if self.alignment is not None:
                        self.alignment.started(tps, time.monotonic())

        try:
            if self.exactly_once:  # fenced before anything of the task is read, its stores included
                await self._start_tasks(partitions)
            if not self.tables:
                for p in partitions:
                    ready(p)
            await asyncio.gather(*(table.restore(self.bootstrap, partitions, ready) for table in self.tables))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the batch loop raises it: the worker exits and starts again
            log.error("%s: restoring partitions %s failed: %s", self.group, sorted(partitions), exc)
            self._restore_error = exc

    async def _stop_restoring(self) -> None:
        task, self._restoring = self._restoring, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sweep_stores(self) -> None:
        for table in self.tables:
            table.sweep()

    async def _send_changes(self) -> None:
        for table in self.tables:
            for partition, key, value in table.changes():
                if self.exactly_once:
                    await self._send_in_transaction(self._lane(partition),
                                                    _Sent(table.topic, key, value, partition, table))
                else:
                    delivery = await self.producer.send(table.topic, value=value, key=key, partition=partition)
                    self._changelog_in_flight.append((table, partition, delivery))

    async def _commit(self) -> None:
        if self._stopping or not (self._done or self._in_flight or self._changelog_in_flight or self._open):
            return
        with streaming.commit_histogram().time():
            await self._commit_now()

    async def _commit_now(self) -> None:
        offsets, self._done = dict(self._done), {}
        for step in self.before_commit:
            step()
        await self._send_changes()
        # taken before the flush: what a timer sends meanwhile belongs to the next commit
        delivered, self._in_flight = self._in_flight, []
        changes, self._changelog_in_flight = self._changelog_in_flight, []
        await self.producer.flush()  # every output and table change of those records is in Kafka
        if self.exactly_once:
            try:
                if not await self._commit_transactions(offsets, changes):
                    return  # a stop came: the transactions left open are aborted by it
            except GroupFenced as exc:
                if not exc.rejoin:
                    raise
                self._check_deliveries(delivered, [])  # the timers' records are outside the transaction
                await self._lose_all(exc)
                return
            self._check_deliveries(delivered, changes)
            for table in self.tables:
                table.save_offsets()
            return
        self._check_deliveries(delivered, changes)
        if self._stopping or not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group moved on (a rebalance this worker was too slow for): whoever owns the
            # partitions now takes these records again; every effect is idempotent
            log.warning("%s: offsets not committed (%s); their records will be handled again", self.group, exc)
            return
        for table in self.tables:
            table.save_offsets()

    async def _commit_transactions(self, offsets: dict[TopicPartition, int],
                                   changes: list[tuple[ChangelogTable, int, asyncio.Future]]) -> bool:
        """Each task's offsets join its transaction, which is committed: outputs, table changes and
        offsets become visible together. A producer that fails before the commit is asked for is
        replaced once and the transaction sent again (``_renew_task``; ``changes`` then holds the
        new deliveries); fenced (another worker owns the task now), refused again or failing at the
        commit itself: the worker exits before anything later is handled. False: a stop came first."""
        by_task: dict[int, dict[TopicPartition, int]] = {}
        for tp, offset in offsets.items():
            by_task.setdefault(self._lane(tp.partition), {})[tp] = offset
        if self._stopping:
            return False
        if self.scope == "worker" and (WORKER_LANE in by_task or WORKER_LANE in self._open):
            owned = self.consumer.assignment()
            by_task[WORKER_LANE] = {**{tp: o for tp, o in self._positions.items() if tp in owned},
                                    **by_task.get(WORKER_LANE, {})}
        # taken away meanwhile: their records are the new owner's
        tasks = [task for task in sorted(set(by_task) | self._open) if task in self._tasks]
        # Side by side: each task's flush, offsets and commit are round trips of its own producer,
        # and one after another they held the batch loop (and every task's outputs) for all of them
        ended = await asyncio.gather(*(self._commit_task(task, by_task.get(task), changes) for task in tasks),
                                     return_exceptions=True)
        failures = [exc for exc in ended if exc is not None]
        if failures:
            raise next((exc for exc in failures if isinstance(exc, ProducerFenced)), failures[0])
        if self.scope == "worker":
            self._positions.update(by_task.get(WORKER_LANE, {}))
        return True

    async def _commit_task(self, task: int, offsets: dict[TopicPartition, int] | None,
                           changes: list[tuple[ChangelogTable, int, asyncio.Future]]) -> None:
        try:
            producer = await self._for_commit(task, changes, self._transaction(task))
            try:
                await self._prepare_commit(task, producer, offsets)
            except ProducerFenced:
                raise
            except (KafkaError, OutputRefused) as exc:
                fenced = self.fencing(exc)
                if fenced is not None:
                    raise fenced from exc
                why = _cause(exc) or self.dead_sender() or exc
                producer = await self._for_commit(task, changes, self._renew_task(task, why))
                await self._prepare_commit(task, producer, offsets)
            # Not renewed past this point: a commit Kafka took but did not answer would be sent twice
            await asyncio.wait_for(producer.commit_transaction(), self.txn_call_s)
            self._renewed.discard(task)
        except GroupFenced as exc:
            # left open, its records would hold the partitions' readers until its timeout; a
            # producer whose abort failed cannot be trusted with the next transaction
            if not await self._abort(task):
                exc.rejoin = False
            raise
        except ProducerFenced:
            raise
        except (KafkaError, OutputRefused, asyncio.TimeoutError) as exc:
            fenced = self.fencing(exc)
            if fenced is not None:
                raise fenced from exc
            self.guard.on_output_lost(_cause(exc) or self.dead_sender() or exc)
            raise
        finally:
            self._open.discard(task)
            self._txn_records.pop(task, None)

    async def _for_commit(self, task: int, changes: list[tuple[ChangelogTable, int, asyncio.Future]],
                          step: Awaitable[AIOKafkaProducer]) -> AIOKafkaProducer:
        """``step`` (the task's producer, renewed if it failed) during a commit: the table changes a
        renewal sends again replace the task's in ``changes``, the commit's, not the next one's.
        Only this task's entries are moved: the other tasks commit at the same time."""
        try:
            return await step
        finally:
            resent = [c for c in self._changelog_in_flight if self._lane(c[1]) == task]
            if resent:
                self._changelog_in_flight = [c for c in self._changelog_in_flight if self._lane(c[1]) != task]
                changes[:] = [c for c in changes if self._lane(c[1]) != task] + resent

    async def _prepare_commit(self, task: int, producer: AIOKafkaProducer,
                              offsets: dict[TopicPartition, int] | None) -> None:
        await asyncio.wait_for(producer.flush(), self.txn_call_s)
        self._check_task_deliveries(task)
        if task == WORKER_LANE:  # checked by the group coordinator against the group as it is now
            group_transactions.commit_as(producer, group_transactions.member_of(self.consumer))
        if offsets:
            await asyncio.wait_for(producer.send_offsets_to_transaction(offsets, self.group), self.txn_call_s)

    async def _abort(self, lane: int) -> bool:
        """False: not aborted (Kafka ends the transaction at its timeout)."""
        producer = self._tasks.get(lane)
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.abort_transaction(), self.txn_call_s)
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("%s: transaction not aborted (%s); Kafka ends it at its timeout", self.group, exc)
            return False
        return True

    async def _lose_all(self, why: GroupFenced) -> None:
        """Scope worker: the group moved on without this worker and its transaction, everything
        handled since the last commit, was aborted. That work is dropped here (the tables' unsaved
        writes, what services keep, the offsets and positions) and the worker joins the group
        again; what it is assigned then is restored and read from the committed offsets, read
        stable, as by any new owner."""
        owned = self.consumer.assignment()
        log.warning("%s: %s; the work since the last commit is dropped and the worker joins its group again "
                    "(partitions %s)", self.group, why, sorted({tp.partition for tp in owned}))
        streaming.lost_counter().inc()
        await self._stop_restoring()
        self.partitions = frozenset()  # nothing is handled until partitions are assigned and restored
        if owned:
            self.consumer.pause(*owned)  # read again from the committed offsets once assigned
        if self.alignment is not None:
            self.alignment.forget()
        # the commit took the offsets and popped the transaction's records; what it may leave:
        self._positions, self._changelog_in_flight = {}, []
        self._task_deliveries.pop(WORKER_LANE, None)
        self._renewed.discard(WORKER_LANE)
        for table in self.tables:
            table.release(table.held())
        for step in self.on_lost:
            step()
        self.consumer._coordinator.request_rejoin()  # aiokafka's, not public: revoked, then assigned

    async def _renew_task(self, task: int, why: BaseException) -> AIOKafkaProducer:
        """A new producer for the task, its open transaction's records sent again in a new one.
        Starting it fences the failed producer and aborts that one's transaction (Kafka never
        committed it: its commit was not asked for), so the new transaction holds those records
        once; the state the worker built from them stands as it is. For a producer aiokafka gave
        up on: the coordinator no longer knowing it after a broker restart
        (InvalidProducerIdMapping), a batch expired and every later one refused."""
        if task in self._renewed:  # a new producer failed too: what fails is not the producer
            self.guard.on_output_lost(why)
            raise OutputRefused(f"{_lane_name(task)}'s transaction, sent again: {why!r}") from why
        self._renewed.add(task)
        reason = type(why).__name__
        log.warning("%s: %s's producer failed (%s: %s); a new producer sends its transaction again",
                    self.group, _lane_name(task), reason, why)
        RENEWALS.labels(client=self.name, reason=reason).inc()
        old = self._tasks.pop(task)
        records = self._txn_records.pop(task, [])
        self._open.discard(task)
        self._task_deliveries.pop(task, None)
        self._changelog_in_flight = [c for c in self._changelog_in_flight if self._lane(c[1]) != task]
        try:
            await asyncio.wait_for(old.stop(), self.txn_call_s)
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("%s: the failed producer of %s did not stop cleanly (%s)", self.group, _lane_name(task),
                        type(exc).__name__)
        producer = self._producer(self._transactional_id(task))
        try:
            await asyncio.wait_for(producer.start(), self.txn_call_s)
        except BaseException:
            await asyncio.gather(producer.stop(), return_exceptions=True)
            raise
        self._tasks[task] = producer
        await producer.begin_transaction()
        self._open.add(task)
        for record in records:
            await self._send_in_transaction(task, record)
        return producer

    def _check_task_deliveries(self, task: int) -> None:
        """Before a task's transaction commits: every record sent in it was taken, else
        OutputRefused and the transaction stays uncommitted. aiokafka would commit it without a
        refused batch: one expired while its partition had no leader, and every later one of
        that producer, refused OutOfOrderSequenceNumber."""
        for delivery in self._task_deliveries.pop(task, ()):
            exc = _refusal(delivery)
            if exc is None:
                continue
            if isinstance(exc, ProducerFenced):
                raise exc  # another worker owns the task: left as fenced
            raise OutputRefused(f"{_lane_name(task)}'s transaction: {exc!r}") from exc

    def _check_deliveries(self, delivered: list[asyncio.Future],
                          changes: list[tuple[ChangelogTable, int, asyncio.Future]]) -> None:
        """After a flush: exits (``worker_exit``) if Kafka refused any record; notes the changelog offsets."""
        for delivery in delivered + [d for _, _, d in changes]:
            exc = _refusal(delivery)
            if exc is not None:
                self.guard.on_output_lost(exc)
        for table, partition, delivery in changes:
            table.sent(partition, delivery.result().offset)

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await step()
            except Exception:  # noqa: BLE001 - a timer step that fails is tried again next time
                log.exception("%s: timer step %s failed", self.group, getattr(step, "__name__", step))

    async def _measure_lag(self) -> None:
        gauge = streaming.lag_gauge()
        owned = set(self.consumer.assignment())
        for tp in self._lag_shown - owned:  # moved to another worker: its lag is shown there
            gauge.remove(tp.topic, str(tp.partition))
        self._lag_shown = set()
        for tp in owned:
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                position = await self.consumer.position(tp)
                gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, highwater - position))
                self._lag_shown.add(tp)


class _Sent(NamedTuple):
    """A record of an open transaction, as it was handed to the producer."""
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    table: ChangelogTable | None  # the table whose change it carries


def _lane_name(lane: int) -> str:
    return "the worker" if lane == WORKER_LANE else f"partition {lane}"


def _sender_end(producer: AIOKafkaProducer | None) -> BaseException | None:
    """The error that ended the producer's sender routine, if it has ended on one."""
    routine = getattr(getattr(producer, "_sender", None), "sender_task", None)  # aiokafka's, not public
    # running, or stopped on purpose (a task closed, the worker stopping: aiokafka's routine then
    # ends without an error, its cancellation swallowed)
    if routine is None or not routine.done() or routine.cancelled():
        return None
    return routine.exception()


def _failure(producer: AIOKafkaProducer) -> BaseException | None:
    """What ended a transactional producer for good (aiokafka then refuses it every call), if anything."""
    manager = getattr(producer, "_txn_manager", None)  # aiokafka's, not public: looked up defensively
    if manager is None or not manager.is_fatal_error():
        return None
    ended = manager.wait_for_transaction_end()
    if not ended.done() or ended.cancelled() or ended.exception() is None:
        return KafkaError("the transactional producer failed")
    exc = ended.exception()
    # aiokafka's sender wraps what ended it in a plain KafkaError ("Unexpected error during batch delivery")
    return exc.__cause__ if type(exc) is KafkaError and exc.__cause__ is not None else exc


def _cause(exc: BaseException) -> BaseException | None:
    """The refusal behind an OutputRefused."""
    return exc.__cause__ if isinstance(exc, OutputRefused) else None


def _refusal(delivery: asyncio.Future) -> BaseException | None:
    """Why a record was not taken after its producer's flush (None: it was)."""
    if not delivery.done() or delivery.cancelled():
        return RuntimeError("a record was not delivered by the flush")
    return delivery.exception()
