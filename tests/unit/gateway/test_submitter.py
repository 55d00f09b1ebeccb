"""The gateway stamps every document with its submitter (the caller's code it names as its
sender), refuses an Avro record naming another submitter, and lets a client send only the
message types its entry allows."""
from __future__ import annotations

import asyncio
import copy
import io
import json

import fastavro
import grpc
import pytest

from services.common.avro import SCHEMA_DIR, SUPERSEDED, codec
from services.common.ceb.writer import write_message
from services.tools.generator import generate
from services.gateway.client import xml_item
from services.gateway.client_registry import ClientFileError, add_client, load_clients, parse_clients
from services.gateway.errors import PERMISSION_DENIED, CallError
from services.gateway.submission import AVRO, CEB_XML, examine
from tests.gateway_harness import MemoryLog, MemoryPublisher, running_gateway, settings

SOURCE = "gateway:test"


@pytest.fixture(scope="module")
def one():
    return generate(1, fault_share=0, seed=21)[0]


def published(submission) -> list[dict]:
    return [o.record for o in submission.outputs if o.topic.startswith("documents.")]


def test_an_xml_document_carries_the_callers_code_it_names_as_sender(one):
    payload = write_message("CEB311", [one.order])
    for caller in (one.order["ebpCode"], one.order["ebcCode"]):
        [doc] = published(examine(CEB_XML, "CEB311", payload, frozenset({caller, "OTHER1"}), SOURCE))
        assert doc["submitter"] == caller
        name, back = codec().decode(codec().encode("sandan.ceb.Order", doc))
        assert back["submitter"] == caller


def test_a_caller_named_in_both_sender_fields_is_stamped_by_the_first_field(one):
    payload = write_message("CEB311", [one.order])
    both = frozenset({one.order["ebpCode"], one.order["ebcCode"]})
    [doc] = published(examine(CEB_XML, "CEB311", payload, both, SOURCE))
    assert doc["submitter"] == one.order["ebpCode"]


def test_an_avro_record_is_stamped_and_may_name_only_its_caller_as_submitter(one):
    payer = one.payment["payCode"]
    [doc] = published(examine(AVRO, "CEB411", codec().encode("sandan.ceb.Payment", one.payment),
                              frozenset({payer}), SOURCE))
    assert doc["submitter"] == payer
    own = {**one.payment, "submitter": payer}
    [doc] = published(examine(AVRO, "CEB411", codec().encode("sandan.ceb.Payment", own), frozenset({payer}), SOURCE))
    assert doc["submitter"] == payer
    forged = {**one.payment, "submitter": "3301999999"}
    with pytest.raises(CallError) as err:
        examine(AVRO, "CEB411", codec().encode("sandan.ceb.Payment", forged), frozenset({payer}), SOURCE)
    assert err.value.status == PERMISSION_DENIED and "submitter '3301999999'" in err.value.message


def test_a_client_sends_only_the_message_types_its_entry_allows(one):
    payload = write_message("CEB311", [one.order])
    codes = frozenset({one.order["ebpCode"]})
    assert published(examine(CEB_XML, "CEB311", payload, codes, SOURCE, frozenset({"CEB311", "CEB621"})))
    assert published(examine(CEB_XML, "CEB311", payload, codes, SOURCE, None))  # no list: every input type
    with pytest.raises(CallError) as err:
        examine(CEB_XML, "CEB311", payload, codes, SOURCE, frozenset({"CEB411"}))
    assert err.value.status == PERMISSION_DENIED and err.value.message == "your client may send CEB411, not CEB311"


def test_the_clients_file_keeps_and_checks_the_message_types(tmp_path):
    path = tmp_path / "clients.json"
    add_client(path, "payer", "enterprise", ["31222699S7"], messages=["ceb411"])
    add_client(path, "platform", "enterprise", ["3301963K27"])
    clients = load_clients(path)
    assert clients["payer"].messages == frozenset({"CEB411"})
    assert clients["platform"].messages is None
    assert "messages" not in json.loads(path.read_text())["clients"][1]
    entry = {"id": "x", "role": "enterprise", "codes": ["A1"], "token": "sha256$00$00"}
    for messages, problem in ((["CEB312"], "'CEB312' is not a message type an enterprise submits"),
                              ("CEB411", "must be a list")):
        with pytest.raises(ClientFileError, match=problem):
            parse_clients(json.dumps({"clients": [{**entry, "messages": messages}]}))
    with pytest.raises(ClientFileError, match="only an enterprise client"):
        parse_clients(json.dumps({"clients": [{**entry, "role": "customs", "messages": ["CEB411"]}]}))


@pytest.mark.parametrize("kind, name, file", [("order", "sandan.ceb.Order", "order"),
                                              ("payment", "sandan.ceb.Payment", "payment"),
                                              ("inventory", "sandan.ceb.Inventory", "inventory")])
def test_a_version_1_document_without_submitter_still_decodes(one, kind, name, file):
    doc = getattr(one, kind)
    old = json.loads((SCHEMA_DIR / SUPERSEDED / f"{file}.v1.avsc").read_text(encoding="utf-8"))
    tag = f"{name}/1".encode()
    buf = io.BytesIO()
    buf.write(bytes([0xA5, len(tag)]) + tag)
    current = codec().encode(name, doc)  # the same record, v2 header: re-written with the v1 schema below
    record = fastavro.schemaless_reader(io.BytesIO(current[2 + current[1]:]), codec()._by_name[name].parsed)
    record.pop("submitter")
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), record)
    got_name, back = codec().decode(buf.getvalue())
    assert got_name == name and "submitter" not in back
    assert back == {k: v for k, v in doc.items() if v is not None}


def test_a_version_1_verdict_with_its_inventory_still_decodes(one):
    old = json.loads((SCHEMA_DIR / SUPERSEDED / "verdict.v1.avsc").read_text(encoding="utf-8"))
    named: dict = {}
    fastavro.parse_schema(json.loads((SCHEMA_DIR / "failure.avsc").read_text(encoding="utf-8")), named_schemas=named)
    verdict = {"declarationId": "A:1", "ebpCode": "A", "orderNo": "1", "status": "verified", "failures": [],
               "missing": [], "assureCode": None, "buyerKey": None, "quotaYear": 2025,
               "inventory": copy.deepcopy(one.inventory), "lastDocumentAt": 1, "decidedAt": 2}
    current = codec().encode("sandan.Verdict", verdict)
    assert current[2:2 + current[1]] == b"sandan.Verdict/2"
    record = fastavro.schemaless_reader(io.BytesIO(current[2 + current[1]:]), codec()._by_name["sandan.Verdict"].parsed)
    record["inventory"].pop("submitter")
    tag = b"sandan.Verdict/1"
    buf = io.BytesIO()
    buf.write(bytes([0xA5, len(tag)]) + tag)
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old, named_schemas=named), record)
    name, back = codec().decode(buf.getvalue())
    assert name == "sandan.Verdict" and back["status"] == "verified"
    assert back["inventory"] == {k: v for k, v in one.inventory.items() if v is not None}


def test_the_gateway_refuses_a_message_type_outside_the_clients_list_and_stamps_what_it_takes(tmp_path, one):
    path = tmp_path / "clients.json"
    platform = one.order["ebpCode"]
    tokens = {"orders": add_client(path, "orders", "enterprise", [platform], messages=["CEB311"]),
              "payments": add_client(path, "payments", "enterprise", [platform], messages=["CEB411"])}
    order_xml = write_message("CEB311", [one.order])

    async def scenario():
        publisher = MemoryPublisher()
        async with running_gateway(settings(tmp_path), publisher, MemoryLog()) as gw:
            async with gw.client(tokens["orders"]) as allowed, gw.client(tokens["payments"]) as other:
                answers = [a async for a in allowed.submit([xml_item(order_xml, "o")])]
                try:
                    [a async for a in other.submit([xml_item(order_xml, "x")])]
                    refused = None
                except grpc.aio.AioRpcError as exc:
                    refused = (exc.code(), exc.details())
        return publisher, answers, refused

    publisher, answers, refused = asyncio.run(scenario())
    assert [a.item_id for a in answers] == ["o"]
    assert [o.record["submitter"] for o in publisher.on("documents.order")] == [platform]
    assert refused == (grpc.StatusCode.PERMISSION_DENIED, "your client may send CEB411, not CEB311")
