"""The paydata engine on the real Redis (its Lua scripts), with the platform and Kafka stood in
for: idempotent requests, held requests, the deadline, replays, and the outbox when Kafka fails."""
from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from services.common import redis_client
from services.common.clock import now_ms
from services.common.signing.crypto import Certificate, PrivateKey, test_identity
from services.common.signing.registry import CertificateBook, record_for
from services.paydata import protocol
from services.paydata.engine import PaydataEngine
from services.paydata.metrics import paydata
from services.paydata.store import PaydataStore, namespace
from services.paydata_platform.responder import read_record, upload_text
from tests.unit.paydata.samples import EBP, ORDER_NO, order, payment, raw_record, text

pytestmark = pytest.mark.integration


class Harness:
    def __init__(self, prefix: str) -> None:
        key_pem, cert_pem = test_identity(EBP)
        self.key, self.cert = PrivateKey.load(key_pem), Certificate.load(cert_pem)
        book = CertificateBook()
        book.apply(record_for(self.cert, EBP, by="test", at_ms=0))
        self.redis = redis_client.connect()
        self.store = PaydataStore(self.redis, namespace(prefix), 3600)
        self.opened: list[tuple[str, str, str]] = []
        self.published: list = []
        self.failing = 0  # how many publishes fail next
        self.engine = PaydataEngine(store=self.store, open_request=lambda *a: self.opened.append(a),
                                    publish=self.publish, book=book, share=Fraction(1), sample_key=b"k",
                                    deadline_ms=120_000, metrics=paydata())

    async def publish(self, outputs) -> None:
        if self.failing:
            self.failing -= 1
            raise ConnectionError("Kafka away")
        self.published.extend(outputs)

    def upload(self, session_id: str, **head) -> str:
        record = read_record(text(raw_record(**head)).replace('"338.21"', "338.21"))
        return upload_text(record, session_id, 1, self.key, self.cert.number)

    def kinds(self) -> list[str]:
        return [o.record["outcome"] for o in self.published if o.topic == "paydata.outcomes"]


def _verdict() -> dict:
    return {"declarationId": f"{EBP}:{ORDER_NO}", "ebpCode": EBP, "orderNo": ORDER_NO, "status": "verified"}


def test_the_engine_on_redis(stack, topic_prefix):
    t = now_ms()  # certificates are checked against the clock of the call

    async def go():
        h = Harness(topic_prefix)
        await h.store.put_document("order", order())
        await h.store.put_document("payment", payment())
        # a request for a platform with no URL yet waits; it is asked once the URL is known
        await h.engine.on_verdict(_verdict(), t + 1_000)
        assert h.opened == []
        await h.store.set_platform(EBP, "http://127.0.0.1:9/platDataOpen")
        await h.engine.tick(t + 2_000)
        await h.engine.on_verdict(_verdict(), t + 3_000)  # redelivered: no second session
        assert [(url, order_no) for url, order_no, _ in h.opened] == [("http://127.0.0.1:9/platDataOpen", ORDER_NO)]
        session_id = h.opened[0][2]
        # another platform naming the session, then Kafka failing: the answer stands, the outbox keeps it
        other = h.upload(session_id, ebpCode="OTHERPLAT1")
        assert (await h.engine.upload(other, t + 4_000))[0] == protocol.OTHER_PLATFORM
        h.failing = 1
        assert await h.engine.upload(h.upload(session_id), t + 5_000) == (protocol.ACCEPTED, "")
        assert h.published == [] and len(await h.store.pending()) == 1
        assert (await h.engine.upload(h.upload(session_id), t + 6_000))[0] == protocol.SESSION_USED  # a replay
        await h.engine.tick(t + 7_000)  # the outbox is sent
        assert h.kinds() == ["PAYDATA_MATCH"] and await h.store.pending() == {}
        assert [o.topic for o in h.published] == ["paydata.uploads", "paydata.outcomes"]
        await h.engine.tick(t + 8_000)
        assert h.kinds() == ["PAYDATA_MATCH"]  # sent once
        # an operator's request: nothing by the deadline is MISSING once; an upload after it is LATE
        await h.engine.on_request({"requestId": "r1", "orderNo": ORDER_NO, "ebpCode": None}, t + 10_000)
        second = h.opened[-1][2]
        assert second != session_id
        await h.engine.tick(t + 10_000 + 120_000)
        assert h.kinds() == ["PAYDATA_MATCH"]
        await h.engine.tick(t + 10_000 + 120_001)
        await h.engine.tick(t + 10_000 + 130_000)
        assert h.kinds() == ["PAYDATA_MATCH", "PAYDATA_MISSING"]
        code, message = await h.engine.upload(h.upload(second, totalAmount="1.00"), t + 10_000 + 140_000)
        assert code == protocol.ACCEPTED and "PAYDATA_LATE" in message
        late = h.published[-1].record
        assert late["outcome"] == "PAYDATA_LATE" and [m["field"] for m in late["mismatches"]] == ["totalAmount"]
        assert (await h.engine.upload(h.upload("never-issued"), 1))[0] == protocol.UNKNOWN_SESSION
        await h.redis.aclose()

    asyncio.run(go())
