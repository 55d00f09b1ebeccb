"""The returns engine end to end in memory (services/returns/engine.py): the records each
decision publishes, the quota given back, and nothing twice when every input comes twice."""
from __future__ import annotations

import asyncio
import copy
from decimal import Decimal

import pytest

from services.common import codes
from services.returns import records
from services.common.quota.contract import QuotaRelease
from services.returns.engine import ReturnsEngine, Settings, release_quota
from services.returns.inputs import InputError

from . import samples as s
from .harness import Harness, codes_of, commands, receipts

D = Decimal
HOUR = 3600 * 1000


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.reserve(s.verdict())
    harness.feed("declarations.cleared", s.verdict(), s.CLEARED)
    return harness


@pytest.fixture
def released(h) -> Harness:
    h.feed("customs.reports", s.report(), s.RELEASE)
    return h


# --- cancellation ----------------------------------------------------------------------------

def test_a_cancellation_voids_the_whole_tax_releases_the_quota_and_answers_ceb624(h):
    out = h.feed("documents.cancel", s.cancel(), s.at("20250305090000"))
    [command] = commands(out)
    assert (command["commandId"], command["action"], command["amount"]) == ("void:CANCEL-1", "void", D("28.21"))
    assert (command["assureCode"], command["declarationId"]) == (s.AGENT, f"{s.EBP}:{s.ORDER}")
    assert [o.key for o in out if o.topic == "guarantee.commands"] == [s.AGENT.encode()]
    [receipt] = receipts(out)
    assert (receipt["message"], receipt["returnStatus"], receipt["receiver"]) == ("CEB624", "399", s.AGENT)
    assert receipt["documentGuid"] == "CANCEL-1"
    assert h.quota_held(s.verdict()) == 0


def test_a_refused_cancellation_voids_nothing(released):
    out = released.feed("documents.cancel", s.cancel(), s.at("20250311090000"))
    assert commands(out) == []
    [receipt] = receipts(out)
    assert (receipt["returnStatus"], codes_of(receipt)) == ("100", {codes.CANCEL_RELEASED})
    assert released.quota_held(s.verdict()) == D("310.00")


# --- returns ---------------------------------------------------------------------------------

def test_an_accepted_request_is_answered_120_and_voids_nothing_until_the_goods_arrive(released):
    out = released.feed("documents.refund", s.refund(), s.at("20250315090000"))
    [receipt] = receipts(out)
    assert (receipt["message"], receipt["returnStatus"], receipt["receiver"]) == ("CEB626", "120", s.AGENT)
    assert "2025-04-24" in receipt["returnInfo"]
    assert commands(out) == []


def test_a_completed_return_voids_its_share_restores_the_quota_and_answers_both_parties(released):
    released.feed("documents.refund", s.refund(lines=((1, "1"),)), s.at("20250315090000"))
    out = released.feed("warehouse.arrivals", s.arrival(), s.at("20250320100000"))
    [command] = commands(out)
    assert (command["commandId"], command["amount"]) == ("void:return:REFUND-1", D("9.40"))
    by_message = {r["message"]: r for r in receipts(out)}
    assert (by_message["CEB626"]["returnStatus"], by_message["CEB626"]["receiver"]) == ("399", s.AGENT)
    assert (by_message["CEB712"]["returnStatus"], by_message["CEB712"]["receiver"]) == ("399", s.WAREHOUSE)
    assert released.quota_held(s.verdict()) == D("310.00") - D("103.33")


def test_partial_returns_void_exactly_the_bill_and_restore_exactly_p(released):
    for n, lines in enumerate((((1, "1"),), ((2, "1"),), ((1, "1"),))):
        released.feed("documents.refund", s.refund(guid=f"R{n}", lines=lines), s.at("20250315090000"))
        released.feed("warehouse.arrivals", s.arrival(f"P{n}", lines=lines), s.at("20250320100000"))
    amounts = [c["amount"] for c in commands(released.outputs)]
    assert amounts == [D("9.40"), D("9.40"), D("9.41")] and sum(amounts) == D("28.21")
    assert released.quota_held(s.verdict()) == 0


def test_goods_failing_sorting_refuse_the_return_to_the_enterprise_and_the_warehouse(released):
    released.feed("documents.refund", s.refund(), s.at("20250315090000"))
    out = released.feed("warehouse.arrivals", s.arrival(sorting="unfit"), s.at("20250320100000"))
    assert commands(out) == []
    assert {(r["message"], r["returnStatus"]) for r in receipts(out)} == {("CEB626", "100"), ("CEB712", "100")}
    assert all(codes_of(r) == {codes.RETURN_UNFIT} for r in receipts(out))
    assert released.quota_held(s.verdict()) == D("310.00")


def test_a_request_whose_goods_never_arrive_is_refused_when_day_45_ends(released):
    released.feed("documents.refund", s.refund(), s.at("20250315090000"))
    assert released.tick(s.at("20250424235959")) == []
    [receipt] = receipts(released.tick(s.at("20250425000000")))
    assert (receipt["message"], codes_of(receipt)) == ("CEB626", {codes.RETURN_ARRIVAL_LATE})


def test_a_ceb711_entry_counts_as_the_whole_parcel_arriving_fit(released):
    released.feed("documents.refund", s.refund(lines=((1, "2"), (2, "1"))), s.at("20250315090000"))
    out = released.feed("documents.delivery", s.delivery(), s.at("20250320100000"))
    assert [c["amount"] for c in commands(out)] == [D("28.21")]
    assert released.quota_held(s.verdict()) == 0


# --- exactly once ----------------------------------------------------------------------------

SCENARIO = [
    ("declarations.cleared", lambda: s.verdict(), s.CLEARED),
    ("customs.reports", lambda: s.report(), s.RELEASE),
    ("warehouse.arrivals", lambda: s.arrival("P0", lines=((2, "1"),), arrived="20250314100000"),
     s.at("20250314100000")),
    ("documents.refund", lambda: s.refund(guid="R0", lines=((2, "1"),)), s.at("20250315090000")),
    ("documents.refund", lambda: s.refund(guid="R1", lines=((1, "2"),)), s.at("20250316090000")),
    ("documents.delivery", lambda: s.delivery("D1"), s.at("20250320100000")),
]


def _run(twice: bool) -> Harness:
    h = Harness()
    h.reserve(s.verdict())
    for source, make, now in SCENARIO:
        for _ in range(2 if twice else 1):
            h.feed(source, make(), now)
    return h


def test_every_input_delivered_twice_publishes_and_releases_exactly_what_once_does():
    once, twice = _run(False), _run(True)
    assert [(o.topic, o.key, o.record) for o in twice.outputs] == [(o.topic, o.key, o.record) for o in once.outputs]
    assert sum(c["amount"] for c in commands(twice.outputs)) == D("28.21")
    assert twice.quota_held(s.verdict()) == 0


def test_a_step_repeated_after_a_crash_gives_the_same_records_and_the_quota_back_once(released):
    released.feed("documents.refund", s.refund(lines=((1, "1"),)), s.at("20250315090000"))
    bucket = released.bucket(s.ORDER)
    arrival = released.wire.decode(released.wire.encode("sandan.WarehouseArrival",
                                                        {**s.arrival(), "orderNo": s.ORDER}))[1]
    payload = b""
    steps = [released.engine.take(copy.deepcopy(bucket), "returns.arrivals", arrival, payload, s.at("20250320100000"))
             for _ in range(2)]  # the state was never saved: the same input is taken again
    assert [o.record for o in steps[0].outputs] == [o.record for o in steps[1].outputs]
    for step in steps:
        asyncio.run(release_quota(step.releases, released.quota, released.parts))
    assert released.quota_held(s.verdict()) == D("310.00") - D("103.33")


def test_a_cancellation_released_twice_gives_the_quota_back_once(h):
    step = h.engine.take(h.bucket(s.ORDER), "documents.cancel", s.cancel(), b"", 0)
    assert step.releases == [QuotaRelease(f"{s.EBP}:{s.ORDER}", s.BUYER, 2025)]
    # published for rebuilds (quota.releases), as the Redis release is done
    assert [o.record for o in step.outputs if o.topic == "quota.releases"] == [
        {"declarationId": f"{s.EBP}:{s.ORDER}", "buyerKey": s.BUYER, "quotaYear": 2025, "part": None, "amount": None,
         "releasedAt": 0}]
    h.reserve(s.verdict(order_no="OTHER"))  # another declaration of the same buyer stays held
    for _ in range(2):
        asyncio.run(release_quota(step.releases, h.quota, h.parts))
    assert h.quota_held(s.verdict()) == D("310.00")


# --- inputs that come before their declaration -----------------------------------------------

def test_a_report_and_a_request_before_their_declaration_are_held_and_replayed_report_first():
    h = Harness()
    assert h.feed("documents.refund", s.refund(), s.at("20250315090000")) == []
    assert h.feed("customs.reports", s.report(), s.RELEASE) == []
    out = h.feed("declarations.cleared", s.verdict(), s.CLEARED)
    [receipt] = receipts(out)
    assert (receipt["message"], receipt["returnStatus"]) == ("CEB626", "120")


def test_a_held_input_is_refused_when_its_declaration_never_comes():
    h = Harness(Settings(hold_ms=HOUR))
    h.feed("documents.cancel", s.cancel(), 0)
    h.feed("documents.cancel", s.cancel(), 0)  # held once
    assert h.tick(HOUR - 1) == []
    [receipt] = receipts(h.tick(HOUR))
    assert (receipt["message"], codes_of(receipt)) == ("CEB624", {codes.CANCEL_NOT_VERIFIED})


def test_a_parcel_before_its_declaration_waits_for_the_waybill_link():
    h = Harness()
    assert h.feed("warehouse.arrivals", s.arrival(arrived="20250314100000"), s.at("20250314100000")) == []
    assert h.entry(s.WAYBILL)["held"]
    h.reserve(s.verdict())
    h.feed("declarations.cleared", s.verdict(), s.CLEARED)
    h.feed("customs.reports", s.report(), s.RELEASE)
    out = h.feed("documents.refund", s.refund(), s.at("20250315090000"))
    assert [(r["message"], r["returnStatus"]) for r in receipts(out)] == [("CEB626", "120"), ("CEB626", "399"),
                                                                          ("CEB712", "399")]


def test_a_parcel_for_an_unknown_waybill_is_refused_to_the_warehouse_after_the_hold():
    h = Harness(Settings(hold_ms=HOUR))
    h.feed("warehouse.arrivals", s.arrival(waybill="NOSUCH"), 0)
    [receipt] = receipts(h.tick(HOUR))
    assert (receipt["message"], receipt["receiver"], codes_of(receipt)) == ("CEB712", s.WAREHOUSE,
                                                                            {codes.RETURN_NOT_RELEASED})


def test_a_parcel_naming_its_order_needs_no_link(released):
    released.feed("documents.refund", s.refund(), s.at("20250315090000"))
    out = released.feed("warehouse.arrivals", s.arrival(waybill=s.WAYBILL, order_no=s.ORDER), s.at("20250320100000"))
    assert len(commands(out)) == 1
    assert released.entry(s.WAYBILL)["held"] == []


def test_a_waybill_number_two_carriers_used_needs_the_carrier_code(released):
    released.feed("declarations.cleared", s.verdict("SO-OTHER", carrier="91440300MA5EXP9K2H"), s.CLEARED)
    with pytest.raises(InputError) as err:
        released.feed("warehouse.arrivals", s.arrival(), s.at("20250320100000"))
    assert err.value.code == "AMBIGUOUS_WAYBILL"
    released.feed("documents.refund", s.refund(), s.at("20250315090000"))
    out = released.feed("warehouse.arrivals", s.arrival(carrier=s.CARRIER), s.at("20250320100000"))
    assert len(commands(out)) == 1


def test_the_waybill_link_lives_until_no_parcel_can_be_a_return(h):
    links = [link for link in h.entry(s.WAYBILL)["links"]]
    assert links[0]["keepUntil"] == s.CLEARED + Settings().retention_ms
    h.feed("customs.reports", s.report(), s.RELEASE)
    assert h.entry(s.WAYBILL)["links"][0]["keepUntil"] == s.at("20250425000000") + Settings().retention_ms


# --- records ---------------------------------------------------------------------------------

def test_the_same_decision_gets_the_same_receipt_guid_and_another_decision_another():
    doc = {"message": "CEB625", "guid": "G", "agentCode": s.AGENT}
    first = records.receipt_output(doc, "accepted", "120", "x", (), 1)
    again = records.receipt_output(doc, "accepted", "120", "x", (), 2)
    later = records.receipt_output(doc, "completed", "399", "x", (), 3)
    guid = first.record["guid"]
    assert guid == again.record["guid"] != later.record["guid"]
    assert len(guid) == 36 and guid == guid.upper()


def test_a_document_naming_no_receiver_gets_no_receipt():
    assert records.receipt_output({"message": "CEB625", "guid": "G"}, "accepted", "120", "x", (), 1) is None


def test_the_engine_refuses_sources_it_does_not_read():
    with pytest.raises(ValueError):
        ReturnsEngine().take({}, "documents.order", {}, b"", 0)
