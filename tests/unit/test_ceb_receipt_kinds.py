"""Every receipt kind sandan sends, made by the code that makes it in the stream, written by
``receipt_xml`` and validated against the official XSD (CEB_XSD_DIR, see test_ceb_receipt_xml).

order_match answers orders, payments, waybills and inventories (CEB312/412/512/622) and would
answer a sign-for status (CEB514) the same way; returns answers cancellations, return requests
and parcels (CEB624/626/712). The customs numbers come from ``customs_numbers`` as the workers
put them on (order_match on the verdict and CEB622, returns on CEB624/626).
"""
from __future__ import annotations

import asyncio
import copy

from lxml import etree

from services.common.customs_numbers import MemoryCustomsNumbers, number_outputs
from services.common.ceb.receipt_xml import receipt_messages
from services.tools.generator import generate
from services.common.outputs import Output
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.common.receipts import ACCEPTED, receipt
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

from .returns import samples as s
from .returns.harness import Harness
from .test_ceb_receipt_xml import NS, assert_valid

NO_APP_TIME_CHECK = 10**15
NOW = s.at("20250303150000")


def engine(numbers):
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=60_000, app_time_skew_ms=NO_APP_TIME_CHECK, numbers=numbers)


def receipts_of(outputs) -> list[dict]:
    return [o.record for o in outputs if o.topic == "receipts"]


def valid_messages(receipts: list[dict]) -> dict[str, list[etree._Element]]:
    """Each receipt message, validated, by code."""
    by_code: dict[str, list] = {}
    for message in receipt_messages(receipts):
        by_code.setdefault(message.code, []).append(assert_valid(message.xml))
    return by_code


def stream_receipts(numbers=None) -> list[dict]:
    """The receipts of a verified, a rejected and an incomplete declaration, and a refused inventory."""
    numbers = numbers or MemoryCustomsNumbers()
    proc = engine(numbers)
    verified, rejected, lonely = generate(3, fault_share=0, seed=51)
    rejected.payment["amountPaid"] += 1
    outputs = []
    for n, decl in enumerate((verified, rejected)):
        bucket = matcher.new_bucket(decl.order["orderNo"])
        for offset, doc in enumerate(decl.documents):
            outputs += asyncio.run(proc.on_document(bucket, copy.deepcopy(doc), NOW, f"d:{n}:{offset}"))
        if decl is verified:
            again = {**copy.deepcopy(decl.inventory), "guid": "FFFFFFFF-0000-4000-8000-000000000001"}
            outputs += asyncio.run(proc.on_document(bucket, again, NOW, "d:9:9"))  # DUPLICATE -621004
    bucket = matcher.new_bucket(lonely.order["orderNo"])
    outputs += asyncio.run(proc.on_document(bucket, copy.deepcopy(lonely.inventory), NOW, "d:3:0"))
    outputs += asyncio.run(proc.number(proc.expire(bucket, NOW, all_open=True), NOW))
    return receipts_of(outputs)


def test_order_match_receipts_of_every_kind_and_outcome_validate():
    receipts = stream_receipts()
    assert {r["returnStatus"] for r in receipts if r["message"] == "CEB622"} == {"120", "100", "-621004"}
    by_code = valid_messages(receipts)
    assert sorted(by_code) == ["CEB312", "CEB412", "CEB512", "CEB622"]


def test_the_ceb622_of_a_verified_inventory_carries_both_numbers_and_a_rejected_one_only_its_pre_entry_number():
    by_status = {r["returnStatus"]: r for r in stream_receipts() if r["message"] == "CEB622"}
    [root] = valid_messages([by_status["120"]])["CEB622"]
    head = root.find(f"{NS}InventoryReturn")
    assert len(head.findtext(f"{NS}preNo")) == 18 and len(head.findtext(f"{NS}invtNo")) == 18
    [root] = valid_messages([by_status["100"]])["CEB622"]
    assert root.find(f"{NS}InventoryReturn/{NS}invtNo") is None


def test_a_sign_for_status_answer_is_a_valid_ceb514():
    status = {"message": "CEB513", "guid": "5130A000-0000-4000-8000-000000000001", "appType": "1",
              "appTime": "20250305100000", "appStatus": "2", "logisticsCode": s.CARRIER, "logisticsName": "物流",
              "logisticsNo": s.WAYBILL, "logisticsStatus": "S", "logisticsTime": "20250305095000"}
    answer = receipt(status, ACCEPTED, "sign-for status stored", (), NOW)
    [root] = valid_messages([answer])["CEB514"]
    assert root.findtext(f"{NS}LogisticsStatusReturn/{NS}logisticsStatus") == "S"


def returns_receipts() -> tuple[list[dict], dict]:
    """A cleared declaration numbered by order_match, then cancellations and a return through returns."""
    numbers = MemoryCustomsNumbers()
    cleared = s.verdict()
    asyncio.run(number_outputs(numbers, [Output("declarations.verdicts", b"", "sandan.Verdict", cleared)], NOW))
    other = s.verdict(order_no="SO2025030300002", waybill="SD250303000000102")
    asyncio.run(number_outputs(numbers, [Output("declarations.verdicts", b"", "sandan.Verdict", other)], NOW))
    h = Harness()
    for v in (cleared, other):
        h.reserve(v)
        h.feed("declarations.cleared", v, s.CLEARED)
    outputs = []
    no_cop = {k: v for k, v in s.cancel("SO2025030300002", guid="CANCEL-2").items() if k != "copNo"}
    outputs += h.feed("documents.cancel", no_cop, s.at("20250305090000"))               # CEB624 399
    outputs += h.feed("documents.cancel", s.cancel("SO2025039999999", guid="CANCEL-X"), s.at("20250305090000"))
    outputs += h.tick(s.at("20250306090000"))                                            # CEB624 100, unknown
    outputs += h.feed("customs.reports", s.report(), s.RELEASE)
    outputs += h.feed("documents.cancel", s.cancel(guid="CANCEL-3"), s.at("20250311090000"))  # CEB624 100
    outputs += h.feed("documents.refund", s.refund(), s.at("20250315090000"))           # CEB626 120
    outputs += h.feed("warehouse.arrivals", s.arrival(), s.at("20250320100000"))         # CEB626 + CEB712 399
    asyncio.run(number_outputs(numbers, outputs, s.at("20250320100000")))
    return receipts_of(outputs), {"cleared": cleared["inventory"], "other": other["inventory"]}


def test_returns_receipts_of_every_kind_validate():
    receipts, _ = returns_receipts()
    assert sorted({(r["message"], r["returnStatus"]) for r in receipts}) == [
        ("CEB624", "100"), ("CEB624", "399"), ("CEB626", "120"), ("CEB626", "399"), ("CEB712", "399")]
    assert sorted(valid_messages(receipts)) == ["CEB624", "CEB626", "CEB712"]


def test_returns_receipts_carry_the_numbers_order_match_gave_the_inventory():
    receipts, inventories = returns_receipts()
    cleared, other = inventories["cleared"], inventories["other"]
    for r in receipts:
        if r["message"] == "CEB626" or (r["message"] == "CEB624" and r["orderNo"] == s.ORDER):
            assert (r["preNo"], r["invtNo"], r["copNo"]) == (cleared["preNo"], cleared["invtNo"], cleared["copNo"])
    [no_cop] = [r for r in receipts if r["message"] == "CEB624" and r["orderNo"] == "SO2025030300002"]
    # the cancellation named no copNo: its answer carries the verified inventory's
    assert (no_cop["preNo"], no_cop["invtNo"], no_cop["copNo"]) == (other["preNo"], other["invtNo"], other["copNo"])
    [unknown] = [r for r in receipts if r["orderNo"] == "SO2025039999999"]
    assert len(unknown["preNo"]) == 18 and unknown["preNo"] not in (cleared["preNo"], other["preNo"])
