"""Examining submitted items: who may send what, partly-bad messages, unreadable payloads, Avro."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
from lxml import etree

from services.common.avro import codec
from services.common.ceb.writer import write_message
from services.common.documents import NAMESPACE
from services.tools.generator import generate
from services.gateway.errors import PERMISSION_DENIED, CallError
from services.gateway.submission import (AVRO, CEB_XML, DEAD_LETTER_PAYLOAD_MAX, SENDER_FIELDS, WHOLE_MESSAGE,
                                         check_sender, examine)

DATA = Path(__file__).resolve().parents[2] / "data" / "ceb"
PLATFORM, MERCHANT, PAYER, CARRIER, AGENT, OPERATOR = ("3301963K27", "3301966M58", "31222699S7", "3301980101",
                                                       "3301961234", "3301970077")
SOURCE = "gateway:test"


def sample(code: str) -> bytes:
    return next(DATA.glob(f"{code}_*.xml")).read_bytes()


# (message, codes that may send it, codes it names that may not)
SENDERS = [
    ("CEB311", [PLATFORM, MERCHANT], [PAYER]),
    ("CEB411", [PAYER], [PLATFORM]),
    ("CEB511", [CARRIER], [PLATFORM]),
    ("CEB513", [CARRIER], [PLATFORM]),
    ("CEB621", [AGENT, MERCHANT], [PLATFORM, CARRIER]),
    ("CEB623", [AGENT, MERCHANT], [PLATFORM, CARRIER]),
    ("CEB625", [AGENT, MERCHANT], [PLATFORM, CARRIER]),
    ("CEB711", [OPERATOR], [CARRIER]),
]


@pytest.mark.parametrize("code, senders, others", SENDERS)
def test_each_message_is_accepted_from_its_senders_only(code, senders, others):
    payload = sample(code)
    for sender in senders:
        submission = examine(CEB_XML, code, payload, frozenset({sender}), SOURCE)
        assert submission.accepted and not submission.refused, (code, sender)
        assert all(o.topic.startswith("documents.") for o in submission.outputs)
    for other in others:
        with pytest.raises(CallError) as err:
            examine(CEB_XML, code, payload, frozenset({other}), SOURCE)
        assert err.value.status == PERMISSION_DENIED
        assert f"{' or '.join(SENDER_FIELDS[code])} must be one of your enterprise codes ({other})" in err.value.message


def test_one_foreign_document_forbids_the_whole_message():
    sets = generate(10, fault_share=0, seed=5)
    own = sets[0]
    foreign = next(s for s in sets if s.order["ebpCode"] != own.order["ebpCode"])
    payload = write_message("CEB311", [own.order, foreign.order])
    with pytest.raises(CallError) as err:
        examine(CEB_XML, "CEB311", payload, frozenset({own.order["ebpCode"]}), SOURCE)
    assert foreign.order["orderNo"] in err.value.message


def _break_field(payload: bytes, document: int, field: str, text: str) -> bytes:
    root = etree.fromstring(payload)
    node = root.findall(f".//{{{NAMESPACE}}}{field}")[document]
    node.text = text
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_partly_bad_message_accepts_the_good_documents_and_dead_letters_the_bad():
    sets = generate(3, fault_share=0, seed=8)
    orders = [s.order for s in sets]
    payload = _break_field(write_message("CEB311", orders), 1, "acturalPaid", "12.3x")
    codes = frozenset(o["ebpCode"] for o in orders)
    submission = examine(CEB_XML, "CEB311", payload, codes, SOURCE)
    assert submission.accepted == [orders[0]["guid"], orders[2]["guid"]]
    [refused] = submission.refused
    assert (refused.guid, refused.index) == (orders[1]["guid"], 1)
    assert "acturalPaid" in refused.info and orders[1]["orderNo"] in refused.info
    letters = [o for o in submission.outputs if o.topic == "deadletter"]
    assert [letter.record["documentGuid"] for letter in letters] == [orders[1]["guid"]]
    published = [o for o in submission.outputs if o.topic == "documents.order"]
    assert [o.key for o in published] == [orders[0]["orderNo"].encode(), orders[2]["orderNo"].encode()]


@pytest.mark.parametrize("message_type, payload, problem", [
    ("CEB311", b"<not xml", "not well-formed"),
    ("CEB311", b"", "empty"),
    ("CEB411", sample("CEB311"), "payload is a CEB311Message"),
    ("CEB312", sample("CEB312"), "not one the gateway takes"),
    ("", sample("CEB311"), "not one the gateway takes"),
])
def test_an_unreadable_item_is_refused_whole_and_dead_lettered(message_type, payload, problem):
    submission = examine(CEB_XML, message_type, payload, frozenset({PLATFORM, MERCHANT}), SOURCE)
    assert submission.accepted == []
    [refused] = submission.refused
    assert refused.index == WHOLE_MESSAGE and problem in refused.info
    [letter] = submission.outputs
    assert letter.topic == "deadletter" and letter.record["payload"] == payload
    assert letter.record["source"] == SOURCE


def test_a_huge_unreadable_payload_is_cut_in_its_dead_letter():
    payload = b"x" * (DEAD_LETTER_PAYLOAD_MAX + 10)
    [letter] = examine(CEB_XML, "CEB311", payload, frozenset({PLATFORM}), SOURCE).outputs
    assert len(letter.record["payload"]) == DEAD_LETTER_PAYLOAD_MAX
    assert f"of {len(payload)} bytes" in letter.record["reason"]


def test_an_unknown_format_is_refused():
    submission = examine("PAYLOAD_FORMAT_UNSPECIFIED", "CEB311", sample("CEB311"), frozenset({PLATFORM}), SOURCE)
    assert "CEB_XML or AVRO" in submission.refused[0].info


def test_an_avro_document_is_checked_like_xml_and_published():
    s = generate(1, fault_share=0, seed=9)[0]
    payload = codec().encode("sandan.ceb.Payment", s.payment)
    submission = examine(AVRO, "CEB411", payload, frozenset({s.payment["payCode"]}), SOURCE)
    assert submission.accepted == [s.payment["guid"]] and not submission.refused
    [output] = submission.outputs
    assert (output.topic, output.key, output.schema) == ("documents.payment", s.payment["orderNo"].encode(),
                                                         "sandan.ceb.Payment")
    with pytest.raises(CallError):
        examine(AVRO, "CEB411", payload, frozenset({s.payment["ebpCode"]}), SOURCE)


def test_an_avro_document_breaking_a_field_rule_is_refused():
    s = generate(1, fault_share=0, seed=9)[0]
    bad = copy.deepcopy(s.payment)
    bad["orderNo"] = "N" * 61  # the standard allows 60 characters
    payload = codec().encode("sandan.ceb.Payment", bad)
    submission = examine(AVRO, "CEB411", payload, frozenset({bad["payCode"]}), SOURCE)
    assert submission.accepted == [] and "orderNo" in submission.refused[0].info
    assert submission.refused[0].guid == bad["guid"]
    assert [o.topic for o in submission.outputs] == ["deadletter"]


@pytest.mark.parametrize("message_type, payload, problem", [
    ("CEB411", b"\xa5\x05junk", "not a sandan Avro record"),
    ("CEB311", codec().encode("sandan.ceb.Payment", generate(1, fault_share=0, seed=9)[0].payment), "CEB411"),
    ("CEB311", codec().encode("sandan.Receipt", {
        "guid": "G", "message": "CEB312", "receiver": PLATFORM, "returnStatus": "120",
        "returnTime": "20250101000000000", "returnInfo": "", "failures": []}), "not a document record"),
])
def test_avro_that_is_not_the_declared_document_is_refused(message_type, payload, problem):
    submission = examine(AVRO, message_type, payload, frozenset({PLATFORM}), SOURCE)
    assert submission.accepted == [] and problem in submission.refused[0].info


def test_a_document_naming_no_sender_at_all_is_left_to_the_format_check():
    check_sender({"orderNo": "1"}, "CEB411", frozenset({PAYER}))  # no PERMISSION_DENIED: it is refused anyway
