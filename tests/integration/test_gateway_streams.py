"""Subscriber streams on the real Kafka: resuming across a gateway restart with no gap and no
repeat, and a slow subscriber that cannot make the gateway buffer the topic."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import REGISTRY

from services.common import kafka_io, topics
from services.gateway import cursor
from services.gateway.proto import gateway_pb2 as pb
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import kafka_gateway, produce, register, settings, verdict_bytes

pytestmark = pytest.mark.integration


def verdicts(numbers) -> list[tuple[bytes, bytes]]:
    return [(f"ORD{n:06d}".encode(), verdict_bytes(n)) for n in numbers]


def test_a_subscriber_resumes_after_a_gateway_restart_with_nothing_skipped_or_repeated(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("customs", "customs", []))
    produce("declarations.cleared", verdicts(range(40)))

    async def first_gateway():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["customs"]) as client:
                return [d async for d in client.subscribe(limit=15)]

    async def second_gateway(last_cursor):
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["customs"]) as client:
                return [d async for d in client.subscribe(last_cursor, idle_timeout=1.5)]

    before = asyncio.run(first_gateway())
    produce("declarations.cleared", verdicts(range(40, 50)))  # written while no gateway runs
    after = asyncio.run(second_gateway(before[-1].cursor))

    seen = [d.order_no for d in before + after]
    assert len(seen) == len(set(seen)) == 50  # every declaration once
    assert set(seen) == {f"ORD{n:06d}" for n in range(50)}
    # Offsets: the resumed stream continues exactly where the cursor pointed, per partition.
    resumed_from = cursor.decode(before[-1].cursor, "declarations.cleared")
    end = cursor.decode(after[-1].cursor, "declarations.cleared")
    assert sum(end.values()) - sum(resumed_from.values()) == len(after)


def test_a_slow_subscriber_keeps_the_gateways_buffer_bounded(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("slow", "customs", []))
    total, batch = 2000, 32
    produce("declarations.cleared", verdicts(range(total)))
    # A client that does not enlarge its HTTP/2 window: what the transport may hold stays small and fixed.
    slow_window = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024))

    async def scenario():
        async with kafka_gateway(settings(tmp_path, stream_batch=batch)) as gw:
            async with gw.client(tokens["slow"], channel_options=slow_window) as client:
                call = client.stub.Subscribe(pb.SubscribeRequest(), metadata=client.metadata)
                received = [await call.read() for _ in range(10)]
                stream = await _settled(gw.gateway)  # the client has stopped reading
                held = (stream.taken, stream.sent, stream.buffered)
                lag_while_paused = _lag()
                while len(received) < total:  # then it reads everything: nothing was dropped
                    received.append(await call.read())
                call.cancel()
        return held, received, lag_while_paused

    (taken, sent, buffered), received, lag_while_paused = asyncio.run(scenario())
    assert lag_while_paused >= total - taken  # the metric shows what waits on Kafka for this client
    assert _lag() == 0  # and forgets the stream once it is closed
    print(f"slow subscriber: gateway took {taken}, handed {sent} to gRPC, holds {buffered}")
    assert buffered <= batch
    assert taken < total // 4, f"the gateway took {taken} records from Kafka for a client that read 10"
    assert len({d.order_no for d in received}) == total


def _lag() -> float:
    return REGISTRY.get_sample_value("sandan_gateway_subscriber_lag", {"method": "Subscribe", "client": "slow"})


async def _settled(gateway):
    """The single open stream once its counters stop moving (the flow-control stall)."""
    last = None
    steady = 0
    for _ in range(100):
        await asyncio.sleep(0.1)
        stream = gateway.streams[0]
        now = (stream.taken, stream.sent)
        steady = steady + 1 if now == last else 0
        last = now
        if steady == 5:
            return stream
    raise AssertionError(f"the stream kept taking records: {last}")


def test_partitions_a_cursor_does_not_name_are_read_from_their_beginning(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("customs", "customs", []))
    produce("declarations.cleared", verdicts(range(12)))
    ends = kafka_io.end_offsets(topics.name("declarations.cleared"))
    at_end_of_zero = cursor.encode("declarations.cleared", {0: ends[0]})  # silent about the other partitions

    async def scenario():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["customs"]) as client:
                return [d async for d in client.subscribe(at_end_of_zero, idle_timeout=1.5)]

    assert len(asyncio.run(scenario())) == 12 - ends[0]


def test_cursors_past_the_end_or_beyond_kafkas_offsets_are_refused_not_replayed(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("customs", "customs", []))
    produce("declarations.cleared", verdicts(range(6)))
    ends = kafka_io.end_offsets(topics.name("declarations.cleared"))
    past_end = cursor.encode("declarations.cleared", {p: end + 100 for p, end in ends.items()})
    huge = cursor.encode("declarations.cleared", {0: 2**64})

    async def refusal(client, text):
        try:
            got = [d async for d in client.subscribe(text, idle_timeout=5)]
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, f"{len(got)} declarations"

    async def scenario():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["customs"]) as client:
                return await refusal(client, past_end), await refusal(client, huge)

    (end_code, end_text), (huge_code, huge_text) = asyncio.run(scenario())
    assert end_code == grpc.StatusCode.OUT_OF_RANGE and end_text.startswith("cursor: offset ")
    assert huge_code == grpc.StatusCode.INVALID_ARGUMENT and huge_text.startswith(f"cursor: '{huge[:24]}")
