"""Receipts as CEB XML through the gateway (format CEB_XML): messages per receiver and kind that
validate against the official XSD, only the caller's, and resumable by cursor with nothing lost."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lxml import etree

from services.common.avro import codec
from services.common.ceb import xsd
from services.tools.generator import generate
from services.gateway import cursor
from services.gateway.kafka_bridge import LogRecord
from services.gateway.receipt_groups import xml_messages
from services.common.receipts import receipt
from services.common.signing import dxp
from services.common.signing.crypto import PrivateKey, make_certificate
from services.gateway.receipt_envelopes import ReceiptSigner
from tests.gateway_harness import MemoryLog, MemoryPublisher, register, running_gateway, settings

XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or Path(__file__).resolve().parents[3].parent / "shared" / "ceb" / "xsd")
SETS = generate(6, fault_share=0, seed=21)
OWN = SETS[0].order["ebpCode"]
NOW_MS = 1749960000000


def order_receipt(n: int, receiver: str = OWN) -> dict:
    rec = receipt(SETS[n].order, "120", "verified", [], NOW_MS)
    return dict(rec, guid=f"{n:08d}-0000-4000-8000-000000000312", receiver=receiver)


def payment_receipt(n: int, receiver: str = OWN) -> dict:
    rec = receipt(SETS[n].payment, "120", "verified", [], NOW_MS)
    return dict(rec, guid=f"{n:08d}-0000-4000-8000-000000000412", receiver=receiver)


def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario, 30))


def stream(log: MemoryLog, tmp_path, resume: bool = False, signer=None) -> list[list]:
    """The XML messages of one stream from the start, then (``resume``) of one stream from each
    message's cursor."""
    tokens = register(tmp_path / "clients.json", ("platform", "enterprise", [OWN]))

    async def scenario():
        async with running_gateway(settings(tmp_path), MemoryPublisher(), log, signer=signer) as gw:
            async with gw.client(tokens["platform"]) as client:
                read = [[m async for m in client.receipts(xml=True, idle_timeout=0.5)]]
                for message in read[0] if resume else ():
                    read.append([m async for m in client.receipts(message.cursor, xml=True, idle_timeout=0.5)])
                return read
    return run(scenario())


def test_the_callers_receipts_come_as_messages_per_kind_that_validate_against_the_xsd(tmp_path):
    log = MemoryLog()
    written = [order_receipt(0), payment_receipt(1), order_receipt(3)]  # one read of partition 0
    for rec in written:
        log.append(0, OWN.encode(), codec().encode("sandan.Receipt", rec))
    log.append(1, b"OTHER00001", codec().encode("sandan.Receipt", order_receipt(2, "OTHER00001")))
    [messages] = stream(log, tmp_path)
    assert [(m.xml.message_type, m.xml.receiver, list(m.xml.receipt_guids)) for m in messages] == [
        ("CEB312", OWN, [written[0]["guid"], written[2]["guid"]]), ("CEB412", OWN, [written[1]["guid"]])]
    assert all(m.guid == "" and m.receipt == b"" for m in messages)  # XML form: only cursor and xml
    schema = xsd.schema_for(XSD_DIR)
    for m in messages:
        root = etree.fromstring(m.xml.payload)
        assert root.tag == f"{{http://www.chinaport.gov.cn/ceb}}{m.xml.message_type}Message"
        assert xsd.problems(schema, root) == []


def test_each_message_comes_also_in_its_envelope_signed_by_sandan_which_validates_and_verifies(tmp_path):
    key = PrivateKey.generate("sm2")
    certificate = make_certificate(key, "sandan")
    log = MemoryLog()
    for rec in [order_receipt(0), payment_receipt(1)]:
        log.append(0, OWN.encode(), codec().encode("sandan.Receipt", rec))
    [messages] = stream(log, tmp_path, signer=ReceiptSigner(key, certificate, "DXPSANDAN0000001",
                                                            clock=lambda: NOW_MS))
    envelope_schema = xsd.schema_for(XSD_DIR, xsd.DXP_SCHEMA_FILE)
    assert len(messages) == 2
    for m in messages:
        root = etree.fromstring(m.xml.signed_envelope)
        assert xsd.problems(envelope_schema, root) == []
        verified, envelope = dxp.verify(root, certificate)
        assert verified.number == certificate.number
        assert envelope.data == m.xml.payload and envelope.msg_type == m.xml.message_type
        assert (envelope.sender, envelope.receiver_code, envelope.created) == (
            "DXPSANDAN0000001", OWN, "2025-06-15T12:00:00+08:00")
        assert envelope.msg_id == etree.fromstring(m.xml.payload).get("guid")


def test_without_a_signer_the_envelope_is_left_empty(tmp_path):
    log = MemoryLog()
    log.append(0, OWN.encode(), codec().encode("sandan.Receipt", order_receipt(0)))
    [messages] = stream(log, tmp_path)
    assert [m.xml.signed_envelope for m in messages] == [b""] and messages[0].xml.payload


def test_a_stream_resumed_from_any_messages_cursor_loses_no_receipt(tmp_path):
    log = MemoryLog()
    # one read brings 312, 412, 312: the 312 message ends before the 412 one in the log
    for rec in [order_receipt(0), payment_receipt(1), order_receipt(2), payment_receipt(3)]:
        log.append(0, OWN.encode(), codec().encode("sandan.Receipt", rec))
    everything, *resumed = stream(log, tmp_path, resume=True)
    mine = {g for m in everything for g in m.xml.receipt_guids}
    assert len(mine) == 4 and len(everything) == 3  # 312 + 412 from the first read, 412 from the second
    assert resumed[-1] == []  # after the last message: nothing left
    for n, later in enumerate(resumed):
        seen = {g for m in everything[:n + 1] for g in m.xml.receipt_guids}
        assert seen | {g for m in later for g in m.xml.receipt_guids} == mine


def records(receipts: list[dict | None]) -> list[LogRecord]:
    """A read of partition 0: None stands for another receiver's receipt."""
    return [LogRecord(0, i, b"", b"", cursor.encode("receipts", {0: i + 1})) for i in range(len(receipts))]


def test_a_messages_cursor_stands_after_the_records_delivered_so_far_from_the_start_of_the_read():
    read = [order_receipt(0), None, payment_receipt(1), order_receipt(2), None]
    batch = records(read)
    found = xml_messages(batch, [(i, r) for i, r in enumerate(read) if r is not None], "BEFORE")
    assert [(m.code, at) for at, m in found] == [("CEB312", batch[1].cursor),  # the 412 at index 2 still to come
                                                 ("CEB412", batch[4].cursor)]


def test_a_receipt_that_cannot_be_written_as_xml_is_left_out_without_holding_the_cursor():
    broken = dict(order_receipt(1), message="CEB999")
    read = [order_receipt(0), broken, order_receipt(2)]
    batch = records(read)
    found = xml_messages(batch, list(enumerate(read)), "BEFORE")
    assert [(m.code, m.guids, at) for at, m in found] == [
        ("CEB312", (read[0]["guid"],), batch[1].cursor), ("CEB312", (read[2]["guid"],), batch[2].cursor)]


def test_the_command_line_asks_for_a_folder_with_xml_and_for_xml_with_a_folder(capsys):
    from services.cli import main

    assert main(["gateway", "receipts", "--format", "xml"]) == 2
    assert main(["gateway", "receipts", "--out", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert "--format xml needs --out DIR" in err and "--out needs --format xml" in err
