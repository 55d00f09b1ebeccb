"""The demo's receipts desk: receipts read through the gateway as CEB XML, counted per kind once
each, kept as files and checked against the official XSD; the report's line says so."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
from collections import Counter
from pathlib import Path

from services.common.avro import codec
from services.common.ceb import xsd
from services.gateway.receipt_files import root_guid
from services.common.ceb.receipt_xml import receipt_messages
from services.tools.generator import generate
from services.demo.receipts_desk import ReceiptsDesk
from services.demo.runner import Flow, report
from services.demo.paydata_checks import PaydataReport
from services.demo.signatures_stage import SignatureReport
from services.common.signing.crypto import PrivateKey, make_certificate
from services.gateway.receipt_envelopes import ReceiptSigner
from services.gateway.client import Credentials
from services.gateway.proto import gateway_pb2 as pb
from services.common.receipts import receipt
from tests.gateway_harness import MemoryLog, MemoryPublisher, register, running_gateway, settings

XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "ceb" / "xsd")
SETS = generate(3, fault_share=0, seed=8)
NOW_MS = 1749960000000


def receipts() -> list[dict]:
    found = [receipt(s.order, "120", "verified", [], NOW_MS) for s in SETS]
    found += [receipt(s.payment, "120", "verified", [], NOW_MS) for s in SETS[:2]]
    return found + [found[0]]  # one delivered twice


def read(tmp_path, xsd_dir, signer=None) -> ReceiptsDesk:
    codes = sorted({r["receiver"] for r in receipts()})
    tokens = register(tmp_path / "clients.json", ("parties", "enterprise", codes))
    log = MemoryLog()
    for r in receipts():
        log.append(0, r["receiver"].encode(), codec().encode("sandan.Receipt", r))

    async def scenario():
        async with running_gateway(settings(tmp_path), MemoryPublisher(), log, signer=signer) as gw:
            desk = ReceiptsDesk(Credentials(gw.address, tokens["parties"]), tmp_path / "receipts", xsd_dir)
            stop = asyncio.Event()
            task = asyncio.create_task(desk.run(stop))
            await desk.settle({"CEB312": 3, "CEB412": 2}, quiet_s=5, limit_s=20)
            stop.set()
            await task
            return desk
    return asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_desk_counts_each_receipt_once_per_kind_keeps_files_and_checks_the_xsd(tmp_path):
    desk = read(tmp_path, str(XSD_DIR))
    assert desk.delivered == Counter({"CEB312": 3, "CEB412": 2})
    assert desk.valid == desk.delivered and desk.problems == []
    files = sorted((tmp_path / "receipts").glob("CEB*.xml"))
    assert {p.name.split("_")[0] for p in files} == {"CEB312", "CEB412"}
    # a file per message, named by the message's own guid: one delivered again is the same file
    assert all(p.name == f"{p.name.split('_')[0]}_{root_guid(p.read_bytes())}.xml" for p in files)
    # and between them every receipt delivered (a message delivered again may share a file or not,
    # as the gateway grouped it: the files hold each receipt, whatever the count of messages)
    inside = {g.decode() for p in files for g in re.findall(rb"<(?:\w+:)?guid>([^<]+)</(?:\w+:)?guid>", p.read_bytes())}
    assert inside == set(desk.seen) and len(files) <= sum(desk.messages.values())


def test_a_message_the_xsd_refuses_is_counted_as_delivered_not_valid(tmp_path):
    desk = ReceiptsDesk(Credentials("unused", ""), tmp_path, str(XSD_DIR))
    [good] = receipt_messages([receipts()[0]])
    broken = good.xml.replace(b"<ceb:returnStatus>120</ceb:returnStatus>", b"")
    assert broken != good.xml
    desk._take(pb.ReceiptMessage(message_type="CEB312", receiver=good.receiver, receipt_guids=good.guids,
                                 payload=broken), xsd.schema_for(XSD_DIR))
    assert desk.delivered == Counter({"CEB312": 1}) and desk.valid == Counter()
    assert desk.problems and desk.problems[0].startswith("CEB312: ")


def test_the_report_says_how_many_receipts_of_each_kind_came_as_xml_and_how_many_validated(tmp_path):
    desk = read(tmp_path, None)  # no XSD at hand: counted, not checked
    out = io.StringIO()

    class Customs:
        delivered, deliveries, released, hold = {}, 0, set(), set()

    result = report({}, Flow({}, {}, {}), Customs(), {"cancelled": 0, "returns_completed": 0, "returns_refused": 0},
                    ({}, {}, "", []), 1.0, out, desk, signatures(), PaydataReport())
    text = out.getvalue()
    assert "receipts delivered as CEB XML" in text and "not checked against the XSD" in text
    assert json.loads(text.splitlines()[-1])["receipts_xml"] == {"CEB312": 3, "CEB412": 2}
    assert result["receipts_xml_valid"] is None and result["as_expected"] is True
    assert result["signatures"] == {"messages_signed": 9, "certificates_registered": 15, "signature_refusals": 0,
                                    "tampered_621": "DIGEST_MISMATCH", "receipt_envelopes": 2,
                                    "receipt_envelopes_verified": 2, "receipt_envelopes_valid": None}
    assert "tampered CEB621 (one character changed after signing): DIGEST_MISMATCH" in text


def signatures(**changes) -> SignatureReport:
    return dataclasses.replace(SignatureReport(
        signed=9, registered=15, tampered="DIGEST_MISMATCH ds:SignedInfo/ds:Reference/ds:DigestValue: changed",
        envelopes=2, envelopes_verified=2, verify_line="CEB312_x.xml: OK certificate 1A sm2-sm3"), **changes)


def test_the_signatures_part_is_not_as_expected_when_anything_in_it_went_wrong():
    assert signatures().as_expected
    assert not signatures(refusals=["NOT_SIGNED ds:Signature: CEB621 must carry a ds:Signature"]).as_expected
    assert not signatures(tampered="").as_expected  # the tampered message went through
    assert not signatures(envelopes_verified=1).as_expected
    assert not signatures(envelopes=0, envelopes_verified=0).as_expected  # no signed receipt at all
    assert not signatures(envelopes_valid=1).as_expected


def test_the_desk_keeps_each_signed_envelope_checks_it_against_the_xsd_and_verifies_it(tmp_path):
    key = PrivateKey.generate("sm2")
    certificate = make_certificate(key, "sandan")
    desk = read(tmp_path, str(XSD_DIR), signer=ReceiptSigner(key, certificate, "DXPSANDAN0000001"))
    assert desk.valid == desk.delivered == Counter({"CEB312": 3, "CEB412": 2}) and desk.problems == []
    assert len(desk.envelopes) == len(list((tmp_path / "receipts").glob("CEB*.xml"))) > 0
    assert desk.envelopes_valid == desk.envelopes
    assert desk.verify(certificate) == (len(desk.envelopes), [])
    verified, failures = desk.verify(make_certificate(PrivateKey.generate("sm2"), "someone else"))
    assert verified == 0 and " SIGNATURE_MISMATCH " in failures[0]
