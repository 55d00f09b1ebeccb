"""The gateway's four methods against the real Kafka: what is acknowledged is on the topics,
subscribers read independently and resume by cursor, receipts reach only their addressee."""
from __future__ import annotations

import asyncio

import pytest

from services.common import kafka_io, topics
from services.common.avro import codec
from services.common.ceb.writer import write_message
from services.tools.generator import generate
from services.gateway.client import avro_item, xml_item
from services.gateway.proto import gateway_pb2 as pb
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import delivered, kafka_gateway, produce, receipt_bytes, register, settings, verdict_bytes

pytestmark = pytest.mark.integration

SETS = generate(8, fault_share=0, seed=77)
PLATFORM = SETS[0].order["ebpCode"]
ORDERS = [s.order for s in SETS if s.order["ebpCode"] == PLATFORM]


def decoded(short_topic: str) -> list[tuple[bytes, dict]]:
    return [(r.key, codec().decode(r.value)[1]) for r in kafka_io.read_all(topics.name(short_topic), timeout_s=20)]


@pytest.fixture
def tokens(tmp_path):
    payer = SETS[0].payment["payCode"]
    return register(tmp_path / "clients.json", ("platform", "enterprise", [PLATFORM]),
                    ("payer", "enterprise", [payer]), ("customs-a", "customs", []), ("customs-b", "customs", []))


def test_submit_puts_accepted_documents_on_kafka_and_refused_ones_in_the_dead_letters(gateway_topics, tmp_path,
                                                                                      tokens):
    partly = write_message("CEB311", ORDERS[:2]).replace(
        f"<ceb:orderNo>{ORDERS[1]['orderNo']}</ceb:orderNo>".encode(), b"<ceb:orderNo></ceb:orderNo>", 1)
    items = [xml_item(write_message("CEB311", [ORDERS[0]]), "good-1"),
             pb.SubmitItem(item_id="bad", message_type="CEB311", format=pb.CEB_XML, payload=b"<?xml?><junk"),
             xml_item(partly, "partly"),
             avro_item(codec().encode("sandan.ceb.Payment", SETS[0].payment), "CEB411", "avro")]

    async def scenario():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["platform"]) as platform, gw.client(tokens["payer"]) as payer:
                answers = [a async for a in platform.submit(items[:3])]
                answers += [a async for a in payer.submit(items[3:])]
        return answers

    answers = asyncio.run(scenario())
    assert [(a.item_id, a.outcome) for a in answers] == [
        ("good-1", pb.OUTCOME_ACCEPTED), ("bad", pb.OUTCOME_REFUSED), ("partly", pb.OUTCOME_PARTLY),
        ("avro", pb.OUTCOME_ACCEPTED)]
    assert [r.index for r in answers[2].refused] == [1] and "orderNo" in answers[2].refused[0].return_info
    orders = decoded("documents.order")
    assert [(key, doc["guid"]) for key, doc in orders] == [(ORDERS[0]["orderNo"].encode(), ORDERS[0]["guid"])] * 2
    assert [doc["guid"] for _, doc in decoded("documents.payment")] == [SETS[0].payment["guid"]]
    letters = [doc for _, doc in decoded("deadletter")]
    assert [(d["code"], d["source"]) for d in letters] == [("UNREADABLE_MESSAGE", "gateway:platform"),
                                                           ("INVALID_DOCUMENT", "gateway:platform")]
    assert letters[1]["documentGuid"] == ORDERS[1]["guid"]


def test_subscribers_read_cleared_declarations_independently_and_resume_by_cursor(gateway_topics, tmp_path, tokens):
    inventory = SETS[0].inventory
    produce("declarations.cleared", [(f"ORD{n:06d}".encode(), verdict_bytes(n, inventory=inventory))
                                     for n in range(20)])

    async def scenario():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["customs-a"]) as a, gw.client(tokens["customs-b"]) as b:
                first_a, all_b = await asyncio.gather(_take(a.subscribe(limit=7)), _take(b.subscribe(limit=20)))
                rest_a = await _take(a.subscribe(first_a[-1].cursor, idle_timeout=1.5))
        return first_a, rest_a, all_b

    first_a, rest_a, all_b = asyncio.run(scenario())
    expected = {f"ORD{n:06d}" for n in range(20)}
    assert {d.order_no for d in all_b} == expected and len(all_b) == 20
    assert len(first_a) + len(rest_a) == 20 and {d.order_no for d in first_a + rest_a} == expected
    sample = all_b[0]
    verdict = codec().decode(sample.verdict)[1]
    assert (sample.declaration_id, sample.ebp_code, sample.assure_code) == (
        verdict["declarationId"], verdict["ebpCode"], verdict["assureCode"])
    assert (sample.cop_no, sample.logistics_no, sample.tax_total) == (inventory["copNo"], inventory["logisticsNo"],
                                                                      "0.00")


async def _take(stream) -> list:
    return [m async for m in stream]


def test_a_report_is_on_kafka_when_it_is_acknowledged(gateway_topics, tmp_path, tokens):
    async def scenario():
        async with kafka_gateway(settings(tmp_path), delivered(f"{PLATFORM}:SO42")) as gw:
            async with gw.client(tokens["customs-a"]) as client:
                return await client.report(ebp_code=PLATFORM, order_no="SO42", status="800",
                                           decided_at="20250303120000", invt_no="29912025I000000042")

    ack = asyncio.run(scenario())
    [(key, report)] = decoded("customs.reports")
    assert key == b"SO42" and report["reportId"] == ack.report_id == f"{PLATFORM}:SO42:800"
    assert (report["status"], report["reporter"], report["decidedAt"]) == ("800", "customs-a", 1_740_974_400_000)


def test_receipts_reach_only_their_addressee_and_resume_by_cursor(gateway_topics, tmp_path, tokens):
    receivers = [PLATFORM, "OTHER00001", PLATFORM, PLATFORM, "OTHER00002", PLATFORM]
    produce("receipts", [(receiver.encode(), receipt_bytes(n, receiver)) for n, receiver in enumerate(receivers)])

    async def scenario():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["platform"]) as client:
                first = await _take(client.receipts(limit=2))
                rest = await _take(client.receipts(first[-1].cursor, idle_timeout=1.5))
        return first, rest

    first, rest = asyncio.run(scenario())
    mine = {f"ORD{n:06d}" for n, r in enumerate(receivers) if r == PLATFORM}
    assert len(first) + len(rest) == len(mine) and {r.order_no for r in first + rest} == mine
    assert {r.receiver for r in first + rest} == {PLATFORM}


def test_the_delivered_index_in_redis_is_shared_keeps_only_digests_and_forgets_past_its_window(
        stack, topic_prefix, monkeypatch):
    import redis.asyncio as aioredis

    from services.gateway.delivered import RedisDelivered, china_day, day_key, member

    monkeypatch.setenv("SANDAN_TOPIC_PREFIX", f"{topic_prefix}delivered-")
    day_s = 86400
    now = [1_780_000_000.0]

    async def scenario():
        redis = aioredis.from_url(stack.redis_url)
        today = china_day(now[0])
        keys = [day_key(d) for d in range(today - 5, today + 5)]
        try:
            # two gateways on one Redis, a window of 2 days
            one, other = (RedisDelivered(redis, window_days=2, clock=lambda: now[0]) for _ in range(2))
            await one.add([f"{PLATFORM}:SO1", f"{PLATFORM}:SO2"])
            found = [await other.contains(f"{PLATFORM}:SO{n}") for n in (1, 2, 3)]
            members = await redis.smembers(day_key(today))
            ttl = await redis.ttl(day_key(today))
            now[0] += 2 * day_s
            still = await other.contains(f"{PLATFORM}:SO1")  # the window's last day
            now[0] += day_s
            gone = await other.contains(f"{PLATFORM}:SO1")   # delivered before the window
            return found, members, ttl, still, gone
        finally:
            await redis.delete(*keys)
            await redis.aclose()

    found, members, ttl, still, gone = asyncio.run(scenario())
    assert found == [True, True, False]
    assert members == {member(f"{PLATFORM}:SO1"), member(f"{PLATFORM}:SO2")} and all(len(m) == 12 for m in members)
    assert 2 * day_s < ttl <= 3 * day_s  # Redis drops the day's set after the window: bounded memory
    assert (still, gone) == (True, False)
