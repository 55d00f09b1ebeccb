"""Subscriber streams sharing one Kafka reader (services/gateway/fanout.py) on the real broker:
how many consumers the gateway opens, and that every stream still gets every cleared
declaration exactly once, in order, whether it joined at the start, mid-stream from a
cursor or from the earliest record, or was detached as a slow subscriber."""
from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from services.common import kafka_io
from services.gateway import cursor
from services.gateway.proto import gateway_pb2 as pb
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import kafka_gateway, produce, register, settings, verdict_bytes

pytestmark = pytest.mark.integration
CLEARED = "declarations.cleared"
SILENCE = 30  # seconds without a record after which a stream is taken as ended (a failing gateway ends the test)


def verdicts(numbers) -> list[tuple[bytes, bytes]]:
    return [(f"ORD{n:06d}".encode(), verdict_bytes(n)) for n in numbers]


class CountingConsumers:
    """The gateway's consumer factory, counting the consumers it makes by client id."""

    def __init__(self) -> None:
        self.made: Counter[str] = Counter()

    def __call__(self, client_id: str) -> AIOKafkaConsumer:
        self.made[client_id] += 1
        return AIOKafkaConsumer(bootstrap_servers=kafka_io.bootstrap(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id=client_id)


def positions(declaration) -> dict[int, int]:
    return cursor.decode(declaration.cursor, CLEARED)


def assert_once_in_order(received, first_offset_sum: int, expected: set[str]) -> None:
    """A fresh topic has contiguous offsets: a stream that gets each record once, in order,
    advances its cursor by exactly one record per declaration, never back in any partition."""
    sums = [sum(positions(d).values()) for d in received]
    assert sums == list(range(first_offset_sum + 1, first_offset_sum + 1 + len(received)))
    for before, after in zip(received, received[1:]):
        a, b = positions(before), positions(after)
        assert all(b.get(p, 0) >= o for p, o in a.items())
    assert {d.order_no for d in received} == expected


async def until(condition, what: str) -> None:
    """Wait for a state of the gateway (not a time: a bound only so a broken gateway fails the test)."""
    for _ in range(1200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def members(gw) -> int:
    shared = gw.gateway.reader.shared.get(CLEARED)
    return len(shared.members) if shared is not None else 0


def test_fifty_subscribers_share_one_consumer_and_each_gets_everything_once_in_order(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("customs", "customs", []))
    consumers = CountingConsumers()
    first, second = 60, 60
    everything = {f"ORD{n:06d}" for n in range(first + second)}

    async def scenario():
        async with kafka_gateway(settings(tmp_path, max_streams_per_client=100), consumer_factory=consumers) as gw:
            async with gw.client(tokens["customs"]) as client:
                got: list[list] = [[] for _ in range(50)]

                async def subscriber(i: int, **how) -> None:
                    limit = how.pop("limit", first + second)
                    async for d in client.subscribe(limit=limit, idle_timeout=SILENCE, **how):
                        got[i].append(d)

                tasks = [asyncio.create_task(subscriber(i, latest=True)) for i in range(50)]
                await until(lambda: members(gw) == 50, "50 subscribers joined the shared reader")
                at_start = dict(consumers.made)
                await asyncio.to_thread(produce, CLEARED, verdicts(range(first)))
                await until(lambda: all(len(g) == first for g in got), "the first part delivered")
                # Joins mid-stream: from the 25th declaration's cursor, and from the earliest record.
                mid_cursor = got[0][24].cursor
                late: dict[str, list] = {"cursor": [], "earliest": []}

                async def joiner(name: str, **how) -> None:
                    async for d in client.subscribe(idle_timeout=SILENCE, **how):
                        late[name].append(d)

                joiners = [asyncio.create_task(joiner("cursor", cursor=mid_cursor, limit=first + second - 25)),
                           asyncio.create_task(joiner("earliest", limit=first + second))]
                await until(lambda: members(gw) == 52, "both late streams caught up and joined")
                await asyncio.to_thread(produce, CLEARED, verdicts(range(first, first + second)))
                await asyncio.gather(*tasks, *joiners)
                return got, late, at_start, gw.gateway.reader.detached

    got, late, at_start, detached = asyncio.run(scenario())
    assert at_start == {"sandan-gateway-shared": 1}  # 50 streams, one consumer
    for received in got:
        assert_once_in_order(received, 0, everything)
    assert_once_in_order(late["cursor"], 25, {d.order_no for d in got[0][25:]})
    assert_once_in_order(late["earliest"], 0, everything)
    # Only the two late streams caught up on consumers of their own (and any stream detached as slow).
    assert consumers.made["sandan-gateway-shared"] == 1
    assert consumers.made["sandan-gateway-stream"] == 2 + detached


def test_a_slow_subscriber_is_detached_and_goes_on_alone_without_gap_or_repeat(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("fast", "customs", []), ("slow", "customs", []))
    consumers = CountingConsumers()
    total, batch = 3000, 32
    everything = {f"ORD{n:06d}" for n in range(total)}
    slow_window = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024))

    async def scenario():
        async with kafka_gateway(settings(tmp_path, stream_batch=batch), consumer_factory=consumers) as gw:
            async with gw.client(tokens["fast"]) as fast, \
                    gw.client(tokens["slow"], channel_options=slow_window) as slow:
                call = slow.stub.Subscribe(pb.SubscribeRequest(start=pb.START_LATEST), metadata=slow.metadata)
                # The fast one stays open throughout, so the shared reader keeps a stream to serve.
                fast_call = fast.stub.Subscribe(pb.SubscribeRequest(start=pb.START_LATEST), metadata=fast.metadata)
                fast_task = asyncio.create_task(_read(fast_call, total))
                await until(lambda: members(gw) == 2, "both subscribers joined the shared reader")
                await asyncio.to_thread(produce, CLEARED, verdicts(range(total)))
                received = await _read(call, 10)  # then the slow one stops reading
                await until(lambda: gw.gateway.reader.detached >= 1, "the slow subscriber was detached")
                fast_received = await fast_task
                received += await _read(call, total - 10)  # it reads again: on its own consumer, then shared
                await until(lambda: members(gw) == 2, "the slow subscriber, caught up, joined again")
                call.cancel()
                fast_call.cancel()
                return fast_received, received, gw.gateway.reader.detached

    fast_received, received, detached = asyncio.run(scenario())
    assert_once_in_order(fast_received, 0, everything)
    assert_once_in_order(received, 0, everything)
    assert consumers.made["sandan-gateway-shared"] == 1
    assert consumers.made["sandan-gateway-stream"] == detached  # a consumer of its own only once detached


async def _read(call, count: int) -> list:
    """Up to ``count`` messages, fewer if the stream falls silent (then the test's counts fail)."""
    out = []
    try:
        while len(out) < count:
            async with asyncio.timeout(SILENCE):
                out.append(await call.read())
    except TimeoutError:
        pass
    return out


def test_a_cursor_where_the_shared_reader_stands_joins_at_once_and_revocation_ends_joined_streams(
        gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("customs", "customs", []), ("other", "customs", []))
    consumers = CountingConsumers()

    async def scenario():
        async with kafka_gateway(settings(tmp_path, auth_recheck_s=0.05), consumer_factory=consumers) as gw:
            async with gw.client(tokens["customs"]) as client, gw.client(tokens["other"]) as other:
                first = other.stub.Subscribe(pb.SubscribeRequest(start=pb.START_LATEST), metadata=other.metadata)
                await until(lambda: members(gw) == 1, "the first subscriber joined")
                await asyncio.to_thread(produce, CLEARED, verdicts(range(10)))
                seen = await _read(first, 10)
                # A reconnect with the last cursor, where the shared reader stands: no consumer of its own.
                resumed = client.stub.Subscribe(pb.SubscribeRequest(cursor=seen[-1].cursor), metadata=client.metadata)
                await until(lambda: members(gw) == 2, "the resumed stream joined")
                await asyncio.to_thread(produce, CLEARED, verdicts(range(10, 15)))
                after = await _read(resumed, 5)
                register(tmp_path / "clients.json", ("other", "customs", []))  # rotates other's token
                seen += await _read(first, 5)  # what it was sent before the revocation, then its status
                ended = await first.code()
                await until(lambda: members(gw) == 1, "the revoked stream left the shared reader")
                resumed.cancel()
                await until(lambda: CLEARED not in gw.gateway.reader.shared, "the unused shared reader closed")
                return seen, after, ended

    seen, after, ended = asyncio.run(scenario())
    assert_once_in_order(seen, 0, {f"ORD{n:06d}" for n in range(15)})
    assert_once_in_order(after, 10, {f"ORD{n:06d}" for n in range(10, 15)})
    assert ended == grpc.StatusCode.UNAUTHENTICATED
    assert consumers.made == {"sandan-gateway-shared": 1}
