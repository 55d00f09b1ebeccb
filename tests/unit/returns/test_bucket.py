"""The return state of one orderNo (services/returns/bucket.py): every decision of DOMAIN §5."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.returns import bucket as state
from services.common import codes
from services.returns.inputs import declaration_from_verdict, parcel_from_arrival, receipt_document
from services.returns.policy import Windows

from . import samples as s

D = Decimal
W = Windows()
RETENTION = 30 * 24 * 3600 * 1000


@pytest.fixture
def bucket() -> dict:
    b = state.new_bucket(s.ORDER)
    state.learn(b, declaration_from_verdict(s.verdict()))
    return b


@pytest.fixture
def released(bucket) -> dict:
    state.take_report(bucket, s.report())
    return bucket


def refund(b, when="20250315090000", **kw):
    doc = s.refund(app_time=when, **kw)
    return state.take_refund(b, doc, receipt_document(doc), s.at(when), W, s.RATES)


def parcel(b, when="20250320100000", **kw):
    return state.take_parcel(b, parcel_from_arrival(s.arrival(arrived=when, **kw)), s.at(when), W, s.RATES)


def kinds(events):
    return [type(e).__name__ for e in events]


def failure_codes(event):
    return {f.code for f in event.failures}


def decl(b):
    return b["declarations"][0]


# --- declarations and releases ---------------------------------------------------------------

def test_a_declaration_is_learned_once(bucket):
    assert state.learn(bucket, declaration_from_verdict(s.verdict())) == []
    assert len(bucket["declarations"]) == 1


def test_the_release_time_comes_from_customs_status_800(bucket):
    assert kinds(state.take_report(bucket, s.report(status="120", invt_no="29912025I000000101"))) == []
    assert decl(bucket)["invtNo"] == "29912025I000000101" and decl(bucket)["releasedAt"] is None
    assert kinds(state.take_report(bucket, s.report())) == ["Released"]
    assert decl(bucket)["releasedAt"] == s.RELEASE


def test_a_repeated_or_second_release_report_changes_nothing(released):
    assert state.take_report(released, s.report()) == []
    assert state.take_report(released, s.report(report_id="other", decided_at=s.RELEASE + 1000)) == []
    assert decl(released)["releasedAt"] == s.RELEASE


def test_inputs_for_another_declaration_are_unknown(bucket):
    assert kinds(state.take_report(bucket, s.report(ebp="OTHER"))) == ["Unknown"]
    assert kinds(state.take_cancel(bucket, s.cancel(ebp="OTHER"), 0)) == ["Unknown"]
    assert kinds(refund(bucket, ebp="OTHER")) == ["Unknown"]
    assert kinds(parcel(bucket, waybill="NOSUCHWAYBILL")) == ["Unknown"]


# --- cancellation ----------------------------------------------------------------------------

def test_a_cleared_declaration_not_yet_released_can_be_cancelled(bucket):
    events = state.take_cancel(bucket, s.cancel(), s.at("20250305090000"))
    assert kinds(events) == ["CancelAccepted"]
    assert decl(bucket)["cancelGuid"] == "CANCEL-1"


def test_a_released_declaration_cannot_be_cancelled(released):
    [event] = state.take_cancel(released, s.cancel(), s.at("20250311090000"))
    assert kinds([event]) == ["CancelRefused"] and failure_codes(event) == {codes.CANCEL_RELEASED}
    assert decl(released)["cancelledAt"] is None


def test_a_cancellation_needs_a_reason(bucket):
    [event] = state.take_cancel(bucket, s.cancel(reason="  "), 0)
    assert failure_codes(event) == {codes.CANCEL_REASON}


def test_a_cancellation_naming_another_inventory_number_is_refused(bucket):
    state.take_report(bucket, s.report(status="120", invt_no="29912025I000000101"))
    [event] = state.take_cancel(bucket, s.cancel(invt_no="29912025I999999999"), 0)
    assert failure_codes(event) == {codes.CANCEL_NOT_VERIFIED}


def test_a_cancellation_is_taken_once_and_a_second_one_is_refused(bucket):
    state.take_cancel(bucket, s.cancel(), 0)
    assert state.take_cancel(bucket, s.cancel(), 0) == []
    [event] = state.take_cancel(bucket, s.cancel(guid="CANCEL-2"), 0)
    assert failure_codes(event) == {codes.CANCEL_REPEATED}


def test_a_change_or_withdrawal_of_a_cancellation_is_refused(bucket):
    doc = dict(s.cancel(), appType="3")
    [event] = state.take_cancel(bucket, doc, 0)
    assert failure_codes(event) == {codes.APP_TYPE}


def test_a_release_reported_after_the_cancellation_is_ignored(bucket):
    state.take_cancel(bucket, s.cancel(), 0)
    assert state.take_report(bucket, s.report()) == []
    assert decl(bucket)["releasedAt"] is None


def test_a_cancelled_declaration_cannot_be_returned(bucket):
    state.take_cancel(bucket, s.cancel(), 0)
    [event] = refund(bucket)
    assert failure_codes(event) == {codes.RETURN_NOT_RELEASED}


# --- return requests -------------------------------------------------------------------------

def test_a_return_needs_a_released_declaration(bucket):
    [event] = refund(bucket)
    assert kinds([event]) == ["ReturnRefused"] and failure_codes(event) == {codes.RETURN_NOT_RELEASED}


def test_a_return_applied_for_before_the_release_is_not_released(released):
    [event] = refund(released, when="20250310095959")
    assert failure_codes(event) == {codes.RETURN_NOT_RELEASED}


def test_a_return_applied_for_on_day_30_waits_for_its_goods(released):
    assert kinds(refund(released, when="20250409235959")) == ["ReturnAccepted"]
    assert decl(released)["requests"][0]["status"] == state.WAITING


def test_a_return_applied_for_on_day_31_is_late(released):
    [event] = refund(released, when="20250410000000")
    assert failure_codes(event) == {codes.RETURN_LATE}


def test_a_late_return_with_bad_lines_names_every_broken_rule(released):
    [event] = refund(released, when="20250410000000", lines=((7, "1"),))
    assert failure_codes(event) == {codes.RETURN_LATE, codes.RETURN_ITEMS}


def test_a_return_naming_another_inventory_number_is_not_released(released):
    state.take_report(released, s.report(status="399", invt_no="29912025I000000101"))
    [event] = refund(released, invt_no="29912025I999999999")
    assert failure_codes(event) == {codes.RETURN_NOT_RELEASED}
    assert kinds(refund(released, guid="REFUND-2", invt_no="29912025I000000101")) == ["ReturnAccepted"]


def test_requests_waiting_for_goods_count_against_the_returnable_quantity(released):
    refund(released, lines=((1, "2"),))
    [event] = refund(released, guid="REFUND-2", lines=((1, "1"),))
    assert failure_codes(event) == {codes.RETURN_ITEMS}


def test_a_request_delivered_twice_is_decided_once(released):
    refund(released)
    assert refund(released) == []
    assert len(decl(released)["requests"]) == 1


# --- parcels ---------------------------------------------------------------------------------

def test_goods_arriving_after_the_request_complete_the_return(released):
    refund(released, lines=((1, "1"),))
    [event] = parcel(released)
    assert kinds([event]) == ["ReturnCompleted"]
    request = decl(released)["requests"][0]
    assert (request["status"], request["voided"], request["quotaRestored"]) == (state.COMPLETED, D("9.40"), D("103.33"))
    assert request["returned"] == [{"gnum": 1, "qty": D(1)}]


def test_goods_arriving_before_the_request_wait_for_it(released):
    assert parcel(released, when="20250314100000") == []
    assert state.parcels_waiting(released) == 1
    assert kinds(refund(released)) == ["ReturnAccepted", "ReturnCompleted"]
    assert state.parcels_waiting(released) == 0


def test_goods_arriving_before_the_release_is_known_wait_for_it(bucket):
    assert parcel(bucket, when="20250314100000") == []
    state.take_report(bucket, s.report())
    assert kinds(refund(bucket)) == ["ReturnAccepted", "ReturnCompleted"]


def test_goods_arriving_on_day_45_complete_the_return(released):
    refund(released)
    assert kinds(parcel(released, when="20250424235959")) == ["ReturnCompleted"]


def test_goods_arriving_on_day_46_refuse_the_return(released):
    refund(released)
    [event] = parcel(released, when="20250425000000")
    assert kinds([event]) == ["ReturnRefused"] and failure_codes(event) == {codes.RETURN_ARRIVAL_LATE}
    assert event.parcel["arrivalId"] == "ARR-1"


def test_late_goods_without_a_request_are_refused_at_once(released):
    [event] = parcel(released, when="20250425000000")
    assert kinds([event]) == ["ParcelRefused"] and event.failure.code == codes.RETURN_ARRIVAL_LATE


def test_goods_failing_sorting_refuse_the_return_and_stay_returnable(released):
    refund(released, lines=((1, "2"),))
    [event] = parcel(released, sorting="unfit")
    assert failure_codes(event) == {codes.RETURN_UNFIT}
    assert kinds(refund(released, guid="REFUND-2", lines=((1, "2"),))) == ["ReturnAccepted"]


def test_a_parcel_returns_what_was_asked_for_and_arrived(released):
    refund(released, lines=((1, "2"), (2, "1")))
    parcel(released, lines=((1, "1"), (2, "5")))
    request = decl(released)["requests"][0]
    assert request["returned"] == [{"gnum": 1, "qty": D(1)}, {"gnum": 2, "qty": D(1)}]
    assert state.returned(decl(released)) == {1: D(1), 2: D(1)}


def test_a_parcel_serves_the_oldest_waiting_request_that_asks_for_its_goods(released):
    refund(released, guid="A", when="20250315090000", lines=((2, "1"),))
    refund(released, guid="B", when="20250316090000", lines=((1, "1"),))
    refund(released, guid="C", when="20250317090000", lines=((1, "1"),))
    [event] = parcel(released, lines=((1, "1"),))
    assert event.request["guid"] == "B"


def test_a_parcel_holding_none_of_the_requested_goods_waits(released):
    refund(released, lines=((2, "1"),))
    assert parcel(released, lines=((1, "1"),)) == []
    assert state.parcels_waiting(released) == 1


def test_a_parcel_delivered_twice_is_taken_once(released):
    refund(released)
    parcel(released)
    assert parcel(released) == []


def test_repeated_partial_returns_never_give_back_more_than_the_bill(released):
    total_tax, total_quota = D(0), D(0)
    for n, lines in enumerate((((1, "1"),), ((2, "1"),), ((1, "1"),))):
        refund(released, guid=f"R{n}", lines=lines, when=f"2025031{n}120000")
        [event] = parcel(released, arrival_id=f"P{n}", lines=lines)
        total_tax += event.request["voided"]
        total_quota += event.request["quotaRestored"]
    assert (total_tax, total_quota) == (D("28.21"), D("310.00"))
    [refused] = refund(released, guid="R9", lines=((1, "1"),))
    assert failure_codes(refused) == {codes.RETURN_ITEMS}
    [late_parcel] = parcel(released, arrival_id="P9")
    assert late_parcel.failure.code == codes.RETURN_ITEMS


# --- expiry ----------------------------------------------------------------------------------

def test_a_request_whose_goods_never_arrive_expires_when_day_45_ends(released):
    refund(released)
    deadline = s.at("20250425000000")
    assert state.next_wake(released, W, RETENTION) == deadline
    assert state.expire(released, deadline - 1, W, RETENTION) == []
    [event] = state.expire(released, deadline, W, RETENTION)
    assert kinds([event]) == ["ReturnRefused"] and failure_codes(event) == {codes.RETURN_ARRIVAL_LATE}
    assert state.expire(released, deadline + 1000, W, RETENTION) == []


def test_a_parcel_no_request_claims_is_refused_when_day_45_ends(released):
    parcel(released)
    [event] = state.expire(released, s.at("20250425000000"), W, RETENTION)
    assert kinds([event]) == ["ParcelRefused"] and event.failure.code == codes.RETURN_LATE


def test_a_declaration_is_forgotten_after_its_windows_and_the_retention(released):
    forget = s.at("20250425000000") + RETENTION
    assert state.next_wake(released, W, RETENTION) == forget
    assert state.expire(released, forget - 1, W, RETENTION) == []
    assert kinds(state.expire(released, forget, W, RETENTION)) == ["Forgotten"]
    assert released["declarations"] == []


def test_a_never_released_declaration_refuses_its_waiting_parcels_when_forgotten(bucket):
    parcel(bucket)
    events = state.expire(bucket, s.CLEARED + RETENTION, W, RETENTION)
    assert kinds(events) == ["ParcelRefused", "Forgotten"]
    assert events[0].failure.code == codes.RETURN_NOT_RELEASED
