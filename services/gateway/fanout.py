"""One Kafka reader per topic shared by the gateway's open streams of that topic (fan-out).

A stream starts on the shared reader when it asks for the present (``START_LATEST``) or
resumes exactly where the shared reader stands; otherwise it catches up on a consumer of
its own (``TopicReader``) and joins once its position is at or past the shared reader's in
every partition (or, with no shared reader yet, once it has caught up with the log: then
it starts one there). Each joined stream keeps its own positions: the shared reader hands
it only the records at or past them, with cursors made from them, so nothing is skipped
or repeated at the join. It puts batches on each stream's own bounded queue; a stream
whose queue stays full for ``slow_after_s`` is detached (so one slow subscriber holds up
the others at most that long), empties its queue and goes on from there on a consumer of
its own (flow-controlled, one batch at a time), and may join again once it has caught up.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiokafka.errors import KafkaError

from services.common import topics
from services.gateway import cursor
from services.gateway.errors import UNAVAILABLE, CallError
from services.gateway.kafka_bridge import POLL_MS, LogRecord, StreamStats, TopicReader

log = logging.getLogger("sandan.gateway")
QUEUE_BATCHES = 8  # batches a joined stream may have waiting
SLOW_AFTER_S = 2.0  # how long a full queue may stay full before its stream is detached (a slow subscriber)
LATE_POLL_S = 0.01  # how often the shared reader looks at a full queue again
SHARED_CLIENT_ID = "sandan-gateway-shared"


class _Member:
    """A stream joined to a shared reader: its own positions and queue of batches."""

    def __init__(self, at: dict[int, int], stats: StreamStats, on_lag: Callable[[int], None], capacity: int) -> None:
        self.at, self.stats, self.on_lag = at, stats, on_lag
        self.queue: asyncio.Queue[list[LogRecord]] = asyncio.Queue(capacity)
        self.detached = False  # the shared reader hands it nothing more (queue full, or the reader failed)

    def mine(self, short_topic: str, records: list[LogRecord], before: dict[int, int]) -> list[LogRecord]:
        """The records at or past this stream's positions, with its cursors."""
        if self.at == before:
            return records  # in step with the shared reader: its records and cursors are this stream's
        at, mine = dict(self.at), []
        for r in records:
            if r.offset >= at.get(r.partition, 0):
                at[r.partition] = r.offset + 1
                mine.append(LogRecord(r.partition, r.offset, r.key, r.value, cursor.encode(short_topic, at)))
        return mine

    def took(self, mine: list[LogRecord], ends: dict[int, int]) -> None:
        """``mine`` is on the queue: the stream stands after it."""
        for r in mine:
            self.at[r.partition] = r.offset + 1
        self.stats.taken += len(mine)
        self.on_lag(sum(max(0, end - self.at.get(p, 0)) for p, end in ends.items()))


class _Shared:
    """The one consumer of a topic and the streams joined to it."""

    def __init__(self, fanout: "FanoutReader", short_topic: str) -> None:
        self.fanout, self.short_topic = fanout, short_topic
        self.members: list[_Member] = []
        self.position: dict[int, int] | None = None  # next offset per partition, once the consumer stands
        self.ready = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(_retrieved)  # streams that joined without awaiting it need not see its error
        self.waiting = 0  # streams awaiting ``ready`` to join
        self.closed = False
        self.task: asyncio.Task | None = None

    def join(self, at: dict[int, int], stats: StreamStats, on_lag) -> _Member:
        member = _Member(dict(at), stats, on_lag, self.fanout.queue_batches)
        self.members.append(member)
        return member

    def leave(self, member: _Member) -> None:
        if member in self.members:
            self.members.remove(member)
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if not self.members and not self.waiting and not self.closed:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.fanout.shared.get(self.short_topic) is self:
            del self.fanout.shared[self.short_topic]
        for member in self.members:
            member.detached = True
        self.members = []

    async def _hand_out(self, records: list[LogRecord], before: dict[int, int], ends: dict[int, int]) -> None:
        """The batch onto every joined stream's queue; a stream whose queue stays full for
        ``slow_after_s`` is detached (the others wait at most that long, once, for it)."""
        late = []
        for member in list(self.members):
            mine = member.mine(self.short_topic, records, before)
            if mine and member.queue.full():
                late.append((member, mine))
                continue
            if mine:
                member.queue.put_nowait(mine)
            member.took(mine, ends)
        if not late:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fanout.slow_after_s
        for member, mine in late:
            while member.queue.full() and member in self.members and loop.time() < deadline:
                await asyncio.sleep(LATE_POLL_S)  # no cancelled put: it could not half-happen
            if member not in self.members:
                continue  # it left meanwhile
            if member.queue.full():
                member.detached = True  # a slow subscriber: on its own consumer from what it was handed
                self.members.remove(member)
                self.fanout.detached += 1
                continue
            member.queue.put_nowait(mine)
            member.took(mine, ends)

    async def run(self, start: dict[int, int] | None) -> None:
        """Read from ``start`` (None: the end) and hand every batch to the joined streams until closed."""
        reader = self.fanout.own
        consumer = reader.consumer_factory(SHARED_CLIENT_ID)
        self.fanout.consumers_started += 1
        try:
            await consumer.start()
            self.position = await TopicReader._seek(consumer, topics.name(self.short_topic), start or {}, start is None)
            self.ready.set_result(None)
            while not self.closed:
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=reader.batch)
                before = dict(self.position)
                records = []
                for tp, found in batch.items():
                    for record in found:
                        self.position[tp.partition] = record.offset + 1
                        records.append(LogRecord(tp.partition, record.offset, record.key, record.value,
                                                 cursor.encode(self.short_topic, self.position)))
                ends = {tp.partition: high for tp in consumer.assignment()
                        if (high := consumer.highwater(tp)) is not None}
                await self._hand_out(records, before, ends)
                self._close_if_unused()
        except Exception as exc:  # KafkaError, or a fault here: the streams must not end with the reader
            if not isinstance(exc, KafkaError | CallError):
                log.exception("shared reader of %s failed", self.short_topic)
            log.warning("shared reader of %s stopped (%s); its streams go on on their own consumers",
                        self.short_topic, type(exc).__name__)
            if not self.ready.done():
                self.ready.set_exception(CallError(UNAVAILABLE, f"Kafka did not answer ({type(exc).__name__}); "
                                                                f"try again"))
        finally:
            if not self.closed:
                self.close()
            if not self.ready.done():
                self.ready.set_exception(CallError(UNAVAILABLE, "the shared reader stopped; try again"))
            await consumer.stop()


class FanoutReader:
    """The gateway's ``Reader``: topics in ``shared_topics`` through one shared reader each,
    the others (and catching-up streams) on a ``TopicReader`` consumer per stream."""

    def __init__(self, own: TopicReader, shared_topics: frozenset[str] = frozenset({"declarations.cleared"}),
                 queue_batches: int = QUEUE_BATCHES, slow_after_s: float = SLOW_AFTER_S) -> None:
        self.own, self.shared_topics, self.queue_batches = own, shared_topics, queue_batches
        self.slow_after_s = slow_after_s
        self.shared: dict[str, _Shared] = {}
        self.consumers_started = 0  # shared readers started (for tests and the log)
        self.detached = 0  # streams dropped from a shared reader for a full queue

    def _open(self, short_topic: str, start: dict[int, int] | None) -> _Shared:
        shared = _Shared(self, short_topic)
        self.shared[short_topic] = shared
        shared.task = asyncio.get_running_loop().create_task(shared.run(start), name=f"shared-reader-{short_topic}")
        return shared

    async def read(self, short_topic: str, positions: dict[int, int] | None, latest: bool, stop: asyncio.Event,
                   stats: StreamStats, on_lag: Callable[[int], None]) -> AsyncIterator[list[LogRecord]]:
        if short_topic not in self.shared_topics:
            async for batch in self.own.read(short_topic, positions, latest, stop, stats, on_lag):
                yield batch
            return
        member: _Member | None = None
        shared: _Shared | None = None
        if latest and positions is None or positions is not None and self._standing_at(short_topic, positions):
            shared = self.shared.get(short_topic) or self._open(short_topic, None if latest else positions)
            shared.waiting += 1
            try:
                await shared.ready
            finally:
                shared.waiting -= 1
            if not shared.closed and (latest and positions is None or shared.position == positions):
                member = shared.join(shared.position, stats, on_lag)
            else:
                shared._close_if_unused()
        at, first = positions, True

        def try_join(here: dict[int, int], caught_up: bool) -> bool:
            nonlocal member, shared
            found = self.shared.get(short_topic)
            if found is None and caught_up:
                found = self._open(short_topic, here)
                found.position = dict(here)  # it starts exactly here: join without waiting for its consumer
            if found is None or found.position is None or found.closed:
                return False
            if all(here.get(p, 0) >= offset for p, offset in found.position.items()):
                shared, member = found, found.join(here, stats, on_lag)
                return True
            return False

        try:
            while not stop.is_set():
                if member is None:  # on a consumer of its own until it can join
                    async for batch in self.own.read(short_topic, at, latest and first, stop, stats, on_lag,
                                                     leave=try_join):
                        yield batch
                    first = False
                    if member is None:
                        return  # stopped
                async for batch in self._joined(member, stop):
                    yield batch
                shared.leave(member)
                at, member, shared = dict(member.at), None, None  # detached: on its own from what it was handed
        finally:
            if member is not None and shared is not None:
                shared.leave(member)

    async def close(self) -> None:
        """Stop the shared readers (their streams have ended: the gateway is stopping)."""
        running = [s.task for s in self.shared.values() if s.task is not None]
        for shared in list(self.shared.values()):
            shared.close()
        await asyncio.gather(*running, return_exceptions=True)

    def _standing_at(self, short_topic: str, positions: dict[int, int]) -> bool:
        shared = self.shared.get(short_topic)
        return shared is not None and shared.position is not None and shared.position == positions

    @staticmethod
    async def _joined(member: _Member, stop: asyncio.Event) -> AsyncIterator[list[LogRecord]]:
        while not stop.is_set():
            if member.queue.empty():
                if member.detached:
                    return
                try:
                    async with asyncio.timeout(POLL_MS / 1000):  # not wait_for: no task per batch
                        batch = await member.queue.get()
                except TimeoutError:
                    continue
            else:
                batch = member.queue.get_nowait()
            yield batch


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
