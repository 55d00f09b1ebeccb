"""Only the submitter of a declaration's inventory may cancel it (CEB623) or ask for a return
of it (CEB625): anyone else is answered NOT_SUBMITTER alone and the declaration goes on as if
the document never came. Receipts go to the submitter of the document they answer."""
from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro
import pytest

from services.common import codes
from services.common.avro import MAGIC, SCHEMA_DIR, SUPERSEDED, codec
from services.returns import bucket as state

from . import samples as s
from .harness import Harness, codes_of, commands, receipts

D = Decimal
INTRUDER = "3301999999"


def owned_verdict(submitter: str | None = s.AGENT) -> dict:
    v = s.verdict()
    if submitter is not None:
        v["inventory"]["submitter"] = submitter
    return v


def sent_by(doc: dict, code: str, *, own_field: bool = True) -> dict:
    """``doc`` as ``code`` sent it in (its submitter, and its agentCode too unless told not to)."""
    doc = dict(doc, submitter=code)
    if own_field:
        doc["agentCode"] = code
    return doc


def harness(verdict: dict, *, release: bool) -> Harness:
    h = Harness()
    h.reserve(verdict)
    h.feed("declarations.cleared", verdict, s.CLEARED)
    if release:
        h.feed("customs.reports", s.report(), s.RELEASE)
    return h


def test_another_enterprises_cancellation_is_refused_alone_and_changes_nothing():
    h = harness(owned_verdict(), release=False)
    before = h.bucket(s.ORDER)
    out = h.feed("documents.cancel", sent_by(s.cancel(guid="CANCEL-X", reason=""), INTRUDER), s.at("20250305090000"))
    [receipt] = receipts(out)
    assert (receipt["receiver"], receipt["returnStatus"], codes_of(receipt)) == (INTRUDER, "100", {codes.NOT_SUBMITTER})
    assert [o.key for o in out] == [INTRUDER.encode()] and commands(out) == []
    assert h.quota_held(owned_verdict()) == D("310.00")
    after = h.bucket(s.ORDER)
    assert after["declarations"][0]["cancelledAt"] is None
    assert {**after["declarations"][0], "seen": []} == {**before["declarations"][0], "seen": []}
    assert h.feed("documents.cancel", sent_by(s.cancel(guid="CANCEL-X"), INTRUDER), s.at("20250305090100")) == []
    # the owner's cancellation, even under the guid the intruder used, goes through
    out = h.feed("documents.cancel", sent_by(s.cancel(guid="CANCEL-X"), s.AGENT), s.at("20250305090200"))
    [receipt] = receipts(out)
    assert (receipt["receiver"], receipt["returnStatus"]) == (s.AGENT, "399")
    assert [c["amount"] for c in commands(out)] == [D("28.21")] and h.quota_held(owned_verdict()) == 0


def test_a_refused_foreign_cancellation_tells_nothing_of_the_declarations_state():
    h = harness(owned_verdict(), release=True)
    out = h.feed("documents.cancel", sent_by(s.cancel(invt_no="2991" + "2025I999999999"), INTRUDER),
                 s.at("20250311090000"))
    [receipt] = receipts(out)
    assert codes_of(receipt) == {codes.NOT_SUBMITTER}  # not CANCEL_RELEASED, not the invtNo mismatch
    assert "released" not in receipt["returnInfo"]


def test_another_enterprises_return_request_is_refused_and_not_kept():
    h = harness(owned_verdict(), release=True)
    out = h.feed("documents.refund", sent_by(s.refund(guid="REFUND-X", lines=((1, "2"), (2, "1"))), INTRUDER),
                 s.at("20250315090000"))
    [receipt] = receipts(out)
    assert (receipt["message"], receipt["receiver"], receipt["returnStatus"], codes_of(receipt)) == \
        ("CEB626", INTRUDER, "100", {codes.NOT_SUBMITTER})
    assert h.bucket(s.ORDER)["declarations"][0]["requests"] == []
    assert h.feed("documents.refund", sent_by(s.refund(guid="REFUND-X"), INTRUDER), s.at("20250315090100")) == []
    # the owner's request for all of it is not reduced by the intruder's: accepted, then completed
    out = h.feed("documents.refund", sent_by(s.refund(guid="REFUND-1", lines=((1, "2"), (2, "1"))), s.AGENT),
                 s.at("20250315090200"))
    assert [(r["receiver"], r["returnStatus"]) for r in receipts(out)] == [(s.AGENT, "120")]
    out = h.feed("warehouse.arrivals", s.arrival(), s.at("20250320100000"))
    assert [c["amount"] for c in commands(out)] == [D("28.21")]


def test_the_submitter_is_compared_not_the_agent_code_and_receipts_go_to_the_submitter():
    """The inventory came in from the enterprise (ebcCode) for an agent: the agent's own
    cancellation is another enterprise's; the enterprise's return is answered to it."""
    h = harness(owned_verdict(submitter=s.EBP), release=True)
    out = h.feed("documents.cancel", sent_by(s.cancel(), s.AGENT), s.at("20250311090000"))
    assert [(r["receiver"], codes_of(r)) for r in receipts(out)] == [(s.AGENT, {codes.NOT_SUBMITTER})]
    out = h.feed("documents.refund", sent_by(s.refund(), s.EBP, own_field=False), s.at("20250315090000"))
    [receipt] = receipts(out)
    assert (receipt["receiver"], receipt["returnStatus"]) == (s.EBP, "120")
    assert [o.key for o in out if o.topic == "receipts"] == [s.EBP.encode()]


@pytest.mark.parametrize("intruder_has_submitter", [True, False])
def test_records_without_submitter_compare_the_inventorys_own_sender_field(intruder_has_submitter):
    h = harness(owned_verdict(submitter=None), release=False)
    doc = dict(s.cancel(), agentCode=INTRUDER)
    if intruder_has_submitter:
        doc["submitter"] = INTRUDER
    out = h.feed("documents.cancel", doc, s.at("20250305090000"))
    assert [(r["receiver"], codes_of(r)) for r in receipts(out)] == [(INTRUDER, {codes.NOT_SUBMITTER})]
    out = h.feed("documents.cancel", dict(s.cancel(guid="CANCEL-2")), s.at("20250305090100"))
    assert [(r["receiver"], r["returnStatus"]) for r in receipts(out)] == [(s.AGENT, "399")]


def test_the_learned_declaration_keeps_who_submitted_its_inventory():
    h = harness(owned_verdict(submitter=s.EBP), release=False)
    decl = h.bucket(s.ORDER)["declarations"][0]
    assert (decl["submitter"], decl["agentCode"]) == (s.EBP, s.AGENT)


def test_a_declaration_of_a_version_1_bucket_reads_and_is_not_checked():
    schema = json.loads((SCHEMA_DIR / SUPERSEDED / "returnsBucket.v1.avsc").read_text(encoding="utf-8"))
    assert schema["sandan.version"] == 1
    h = harness(owned_verdict(), release=False)
    bucket = h.bucket(s.ORDER)
    old = {**bucket, "declarations": [{k: v for k, v in d.items() if k not in ("submitter", "agentCode")}
                                      for d in bucket["declarations"]]}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), codec()._entry("sandan.ReturnsBucket").to_wire(old))
    tag = b"sandan.ReturnsBucket/1"
    _, back = codec().decode(bytes([MAGIC, len(tag)]) + tag + body.getvalue())
    assert (back["declarations"][0]["submitter"], back["declarations"][0]["agentCode"]) == (None, None)
    events = state.take_cancel(back, sent_by(s.cancel(), INTRUDER), s.at("20250305090000"))
    assert [type(e) for e in events] == [state.CancelAccepted]
