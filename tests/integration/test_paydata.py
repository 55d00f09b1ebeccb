"""Customs' payment-data check (179) on the real Kafka and Redis: the paydata service as a real
process, platforms' responders answering platDataOpen and uploading signed data over HTTP.

request → ack → signed upload → outcome for a match, a mismatch, a late and a missing upload;
the sessionID customs sent comes back unchanged; an upload signed by another key and a replayed
sessionID are refused.
"""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest

from services.common import kafka_io, topics
from services.common.avro import codec
from services.common.clock import now_ms
from services.common.signing.crypto import PrivateKey, test_identity
from services.demo import paydata_checks as pc
from services.demo.processes import ServiceProcess, service_env
from services.paydata_platform.responder import upload_text
from services.tools.generator import generate

pytestmark = pytest.mark.integration
DEADLINE_S = 10


def _verdict(order: dict) -> dict:
    zero = Decimal(0)
    return {"declarationId": f"{order['ebpCode']}:{order['orderNo']}", "ebpCode": order["ebpCode"],
            "orderNo": order["orderNo"], "status": "verified", "failures": [], "missing": [], "customsTax": zero,
            "consumptionTax": zero, "valueAddedTax": zero, "taxTotal": zero, "taxableValue": zero,
            "assureCode": None, "buyerKey": None, "quotaYear": None, "inventory": None,
            "lastDocumentAt": now_ms(), "decidedAt": now_ms()}


def _publish(pairs: list[tuple[str, str, bytes, dict]]) -> None:
    wire, producer = codec(), kafka_io.producer()
    for short, schema, key, record in pairs:
        producer.send(topics.name(short), key=key, value=wire.encode(schema, record))
    producer.flush()
    producer.close()


def _post(url: str, text: str) -> dict:
    body = urllib.parse.urlencode({"payExInfoStr": text}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as answer:
        return json.loads(answer.read())


def test_payment_data_checks_end_to_end(stack, topic_prefix, tmp_path):
    sets = generate(5, fault_share=0, seed=179)
    good = pc.Platform("PAYDATAOK0", tmp_path / "ok")
    slow = pc.Platform("PAYDATALATE", tmp_path / "late", delay_s=DEADLINE_S + 3)
    dead = pc.Platform("PAYDATADEAD", tmp_path / "dead", answers=False)
    manual = pc.Platform("PAYDATAMAN", tmp_path / "manual", answers=False)  # the test uploads by hand
    owners = [good, good, slow, dead, manual]
    orders = {}
    for s, platform in zip(sets, owners):
        s.order["ebpCode"] = s.payment["ebpCode"] = platform.code
        orders[platform.code, s.order["orderNo"]] = s
    match, mismatch, late, missing, by_hand = (s.order["orderNo"] for s in sets)
    good.add(pc.raw_payment_data(sets[0].order, sets[0].payment))
    good.add(pc.raw_payment_data(sets[1].order, sets[1].payment,
                                 totalAmount=sets[1].payment["amountPaid"] + Decimal("1.00")))
    slow.add(pc.raw_payment_data(sets[2].order, sets[2].payment))
    port = pc.free_port()
    upload_url = f"http://127.0.0.1:{port}/realTimeDataUpload"
    kafka_io.create_topics()
    pc.register([good, slow, dead, manual])
    _publish([(short, schema, s.order["orderNo"].encode(), getattr(s, kind))
              for s in sets for short, schema, kind in (("documents.order", "sandan.ceb.Order", "order"),
                                                          ("documents.payment", "sandan.ceb.Payment", "payment"))])
    env = service_env(topic_prefix, SANDAN_PAYDATA_SAMPLE="1", SANDAN_PAYDATA_DEADLINE=str(DEADLINE_S),
                      SANDAN_PAYDATA_LISTEN=f"127.0.0.1:{port}", SANDAN_PAYDATA_METRICS_PORT="0",
                      SANDAN_LOCAL_DIR=str(tmp_path / "local"))
    service = ServiceProcess("paydata", ["paydata", "serve"], env, tmp_path).start()
    try:
        with pc.Platforms([good, slow, dead, manual], upload_url):
            # every verified declaration is sampled (share 1); the manual platform's order by an operator
            _publish([("declarations.verdicts", "sandan.Verdict", s.order["orderNo"].encode(), _verdict(s.order))
                      for s in sets[:4]])
            pc.request(manual.code, by_hand, "test-by-hand")
            # bad records on its inputs are dead-lettered; the service goes on
            producer = kafka_io.producer()
            producer.send(topics.name("paydata.requests"), key=b"x", value=b"not avro at all")
            producer.send(topics.name("paydata.requests"), key=b"x",
                          value=codec().encode("sandan.ceb.Payment", sets[0].payment))
            producer.flush()
            producer.close()
            # the manual platform: customs' openReq came to nobody; the test answers for it
            session_id = _session_of(by_hand, service)
            other_key = PrivateKey.load(test_identity("intruder", "sm2")[0])
            record = pc.raw_payment_data(sets[4].order, sets[4].payment)
            forged = upload_text(record, session_id, now_ms(), other_key, manual.cert.number)
            refused = _post(upload_url, forged)
            assert refused["code"] == "20007" and "signValue" in refused["message"], refused
            genuine = upload_text(record, session_id, now_ms(), manual.key, manual.cert.number)
            assert _post(upload_url, genuine)["code"] == "10000"
            replayed = _post(upload_url, genuine)
            assert replayed["code"] == "20004", replayed
            assert _post(upload_url, upload_text(record, "no-such-session", now_ms(), manual.key,
                                                 manual.cert.number))["code"] == "20003"
            found = pc.wait_for_outcomes({match: {"PAYDATA_MATCH"}, mismatch: {"PAYDATA_MISMATCH"},
                                          missing: {"PAYDATA_MISSING"}, late: {"PAYDATA_MISSING", "PAYDATA_LATE"},
                                          by_hand: {"PAYDATA_MATCH"}}, 90, service.alive)
            assert service.alive(), service.log.read_text()[-3000:]
    finally:
        service.stop()
    kinds = pc.summary(found)
    assert kinds == {match: ["PAYDATA_MATCH"], mismatch: ["PAYDATA_MISMATCH"], late: ["PAYDATA_MISSING", "PAYDATA_LATE"],
                     missing: ["PAYDATA_MISSING"], by_hand: ["PAYDATA_MATCH"]}, (good.results, slow.results, [
        line for line in service.log.read_text().splitlines() if "upload" in line])
    by_order = {o["orderNo"]: o for o in found}
    assert [m["field"] for m in by_order[mismatch]["mismatches"]] == ["totalAmount"]
    # the sessionID customs sent is the one the platform answered with and the outcome names
    asked = dict(good.asked + slow.asked)
    uploads = {u["orderNo"]: u for u in (codec().decode(r.value)[1]
                                         for r in kafka_io.read_all(topics.name("paydata.uploads"), timeout_s=10))}
    for order_no in (match, mismatch, late):
        assert by_order[order_no]["sessionId"] == asked[order_no]
        assert json.loads(uploads[order_no]["payExInfoStr"])["sessionID"] == asked[order_no]
    assert uploads[by_hand]["sessionId"] == session_id and by_order[by_hand]["reason"] == "operator"
    dead = [codec().decode(r.value)[1] for r in kafka_io.read_all(topics.name("deadletter"), timeout_s=10)]
    assert sorted(d["code"] for d in dead if d["source"] == topics.name("paydata.requests")) == [
        "UNDECODABLE", "UNDECODABLE"]
    log = service.log.read_text()
    assert not [s for s in sets if s.order["buyerName"] in log or s.order["buyerIdNumber"] in log]  # no personal data


def _session_of(order_no: str, service) -> str:
    """The session customs opened for ``order_no`` (read from the service's Redis, as the platform has none)."""
    import time

    import redis

    from services.common import config
    client = redis.Redis.from_url(config.get("SANDAN_REDIS_URL"))
    prefix = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}paydata:session:"
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        for key in client.scan_iter(match=prefix + "*"):
            if client.hget(key, "order_no") == order_no.encode():
                return key.decode()[len(prefix):]
        time.sleep(0.3)
    raise AssertionError(f"no session opened for {order_no}: {service.log.read_text()[-3000:]}")
