"""Issue 15 point 1 through the gateway and a real order_match worker: an enterprise cannot
change or withdraw another enterprise's pending documents. The intruder's attempt is refused
NOT_SUBMITTER with a receipt to the intruder alone, and the owner's declaration is decided
exactly as if it never came."""
from __future__ import annotations

import asyncio
import copy
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.common.avro import SCHEMA_OF_KIND, codec
from services.common.ceb.writer import write_message
from services.common.documents import kind_of
from services.tools.generator import generate
from services.common.senders import SENDER_FIELDS
from services.gateway.client import avro_item, xml_item
from services.gateway.proto import gateway_pb2 as pb
from services.order_match.decide import declaration_id
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import kafka_gateway, register, settings

from .workers import Worker, read_records, wait_for_verdicts, worker_env

pytestmark = pytest.mark.integration

INTRUDER = "3301999999"       # client A: an enterprise holding only this code
OTHER_PAYER = "3101888888"    # a second payment firm


def later(app_time: str, seconds: int = 60) -> str:
    return (datetime.strptime(app_time, "%Y%m%d%H%M%S") + timedelta(seconds=seconds)).strftime("%Y%m%d%H%M%S")


def attempt(doc: dict, app_type: str, n: int, **fields) -> dict:
    change = copy.deepcopy(doc)
    change.update(guid=f"EEEEEEEE-0000-4000-8000-{n:012d}", appType=app_type, appTime=later(doc["appTime"]))
    change.update(fields)
    return change


def item(doc: dict, n: int) -> pb.SubmitItem:
    return avro_item(codec().encode(SCHEMA_OF_KIND[kind_of(doc)], doc), doc["message"], item_id=str(n))


def sender_codes(docs) -> list[str]:
    return sorted({doc[f] for doc in docs for f in SENDER_FIELDS[doc["message"]] if doc.get(f)})


def test_another_enterprise_cannot_change_or_withdraw_a_pending_document(gateway_topics, tmp_path):
    prefix = gateway_topics
    changed, withdrawn, repaid = generate(3, fault_share=0, seed=1501)
    owned = [d for s in (changed, withdrawn, repaid) for d in s.documents]
    tokens = register(tmp_path / "clients.json", ("owner", "enterprise", sender_codes(owned)),
                      ("intruder", "enterprise", [INTRUDER]), ("payer2", "enterprise", [OTHER_PAYER]))
    # The attempts: B's order again with a new guid, appType 2, ebcCode A and another amount;
    # the same as a withdrawal; a second payment firm's payment replacing the first one's.
    order_change = attempt(changed.order, "2", 1, ebcCode=INTRUDER,
                           acturalPaid=changed.order["acturalPaid"] + Decimal("100"))
    order_withdrawal = attempt(withdrawn.order, "3", 2, ebcCode=INTRUDER)
    payment_change = attempt(repaid.payment, "2", 3, payCode=OTHER_PAYER, amountPaid=Decimal("1.00"))
    attempts = {order_change["guid"], order_withdrawal["guid"], payment_change["guid"]}

    worker = Worker("order-match", worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="600"),
                    tmp_path / "worker.log").start()
    try:
        async def submit_all():
            async with kafka_gateway(settings(tmp_path)) as gw:
                async with gw.client(tokens["owner"]) as owner, gw.client(tokens["intruder"]) as intruder, \
                        gw.client(tokens["payer2"]) as payer2:
                    # First what the attempts aim at (same topic and key, so they come after it) ...
                    first = [changed.order, withdrawn.order, repaid.payment]
                    answers = [a async for a in owner.submit([item(d, n) for n, d in enumerate(first)])]
                    # ... then the attempts, which the gateway lets through (each names its sender) ...
                    answers += [a async for a in intruder.submit([xml_item(write_message("CEB311", [order_change]),
                                                                           "change"),
                                                                  item(order_withdrawal, 1)])]
                    answers += [a async for a in payer2.submit([item(payment_change, 2)])]
                    # ... then the owner's remaining documents.
                    rest = [d for d in owned if d not in first]
                    answers += [a async for a in owner.submit([item(d, n) for n, d in enumerate(rest)])]
                    assert [a.outcome for a in answers] == [pb.OUTCOME_ACCEPTED] * len(answers), [list(a.refused) for a in answers]
                    wanted = {declaration_id(s.order["ebpCode"], s.order["orderNo"])
                              for s in (changed, withdrawn, repaid)}
                    verdicts = await asyncio.to_thread(wait_for_verdicts, wanted, timeout_s=150, workers=[worker])
                    time.sleep(2)  # a late second verdict would show up now
                    mine = {who: [r async for r in client.receipts(idle_timeout=3)]
                            for who, client in (("owner", owner), ("intruder", intruder), ("payer2", payer2))}
                    return verdicts, mine

        verdicts, receipts = asyncio.run(submit_all())
    finally:
        worker.stop()

    verdicts = read_records("declarations.verdicts")
    # Each declaration decided once, as it would be without the attempts: verified, on B's amounts.
    assert sorted((v["declarationId"], v["status"]) for v in verdicts) == sorted(
        (declaration_id(s.order["ebpCode"], s.order["orderNo"]), "verified") for s in (changed, withdrawn, repaid))
    for s in (changed, withdrawn, repaid):
        [v] = [v for v in verdicts if v["orderNo"] == s.order["orderNo"]]
        assert v["taxableValue"] == s.order["goodsValue"] + s.order["freight"] + s.inventory.get("insuredFee", 0)
        assert v["taxTotal"] == s.order["taxTotal"]

    def answered(records):
        return {(r.document_guid, r.return_status): codec().decode(r.receipt)[1] for r in records}

    intruded = answered(receipts["intruder"])
    assert {g for g, _ in intruded} == {order_change["guid"], order_withdrawal["guid"]}
    assert all(status == "100" and [f["code"] for f in rec["failures"]] == ["NOT_SUBMITTER"]
               and rec["receiver"] == INTRUDER for (_, status), rec in intruded.items())
    [(guid, status)] = answered(receipts["payer2"])
    assert (guid, status) == (payment_change["guid"], "100")
    # The owner hears of its own documents only: one acceptance (120) each, nothing of the attempts.
    own = answered(receipts["owner"])
    assert sorted(own) == sorted((d["guid"], "120") for d in owned)
    assert not attempts & {g for g, _ in own}
    # Every stored document names its submitter.
    stored = read_records("documents.order") + read_records("documents.payment")
    assert {d["guid"]: d["submitter"] for d in stored if d["guid"] in attempts} == {
        order_change["guid"]: INTRUDER, order_withdrawal["guid"]: INTRUDER, payment_change["guid"]: OTHER_PAYER}
    assert all(d["submitter"] for d in stored)


def test_another_enterprise_acting_before_the_owners_documents_arrive_changes_nothing(gateway_topics, tmp_path):
    """The empty-slot side: the intruder's change and withdrawal and a second payment firm's
    payment reach order_match before the documents they aim at. The withdrawal is NOT_FOUND and
    does not supersede the owner's order; the changes hold no slot: the owner's originals take
    theirs and the changes are answered NOT_SUBMITTER. Each declaration is verified on B's amounts."""
    prefix = gateway_topics
    changed, withdrawn, repaid = generate(3, fault_share=0, seed=1502)
    sets = (changed, withdrawn, repaid)
    owned = [d for s in sets for d in s.documents]
    tokens = register(tmp_path / "clients.json", ("owner", "enterprise", sender_codes(owned)),
                      ("intruder", "enterprise", [INTRUDER]), ("payer2", "enterprise", [OTHER_PAYER]))
    order_change = attempt(changed.order, "2", 11, ebcCode=INTRUDER,
                           acturalPaid=changed.order["acturalPaid"] + Decimal("100"))
    order_withdrawal = attempt(withdrawn.order, "3", 12, ebcCode=INTRUDER)
    payment_change = attempt(repaid.payment, "2", 13, payCode=OTHER_PAYER, amountPaid=Decimal("1.00"))

    worker = Worker("order-match", worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="600"),
                    tmp_path / "worker.log").start()
    try:
        async def submit_all():
            async with kafka_gateway(settings(tmp_path)) as gw:
                async with gw.client(tokens["owner"]) as owner, gw.client(tokens["intruder"]) as intruder, \
                        gw.client(tokens["payer2"]) as payer2:
                    # The attempts first (same topic and key as what they aim at, so they come before it) ...
                    answers = [a async for a in intruder.submit([item(order_change, 1), item(order_withdrawal, 2)])]
                    answers += [a async for a in payer2.submit([item(payment_change, 3)])]
                    # ... then every document of the owner.
                    answers += [a async for a in owner.submit([item(d, n) for n, d in enumerate(owned)])]
                    assert [a.outcome for a in answers] == [pb.OUTCOME_ACCEPTED] * len(answers), \
                        [list(a.refused) for a in answers]
                    wanted = {declaration_id(s.order["ebpCode"], s.order["orderNo"]) for s in sets}
                    await asyncio.to_thread(wait_for_verdicts, wanted, timeout_s=150, workers=[worker])
                    time.sleep(2)  # a late second verdict would show up now
                    return {who: [r async for r in client.receipts(idle_timeout=3)]
                            for who, client in (("owner", owner), ("intruder", intruder), ("payer2", payer2))}

        receipts = asyncio.run(submit_all())
    finally:
        worker.stop()

    verdicts = read_records("declarations.verdicts")
    assert sorted((v["declarationId"], v["status"]) for v in verdicts) == sorted(
        (declaration_id(s.order["ebpCode"], s.order["orderNo"]), "verified") for s in sets)
    for s in sets:
        [v] = [v for v in verdicts if v["orderNo"] == s.order["orderNo"]]
        assert v["taxTotal"] == s.order["taxTotal"]

    def answered(records):
        out = {}
        for r in records:
            rec = codec().decode(r.receipt)[1]
            out[r.document_guid] = (r.return_status, [f["code"] for f in rec["failures"]], rec["receiver"])
        return out

    assert answered(receipts["intruder"]) == {order_change["guid"]: ("100", ["NOT_SUBMITTER"], INTRUDER),
                                              order_withdrawal["guid"]: ("100", ["NOT_FOUND"], INTRUDER)}
    assert answered(receipts["payer2"]) == {payment_change["guid"]: ("100", ["NOT_SUBMITTER"], OTHER_PAYER)}
    assert {g: status for g, (status, _, _) in answered(receipts["owner"]).items()} == \
        {d["guid"]: "120" for d in owned}
