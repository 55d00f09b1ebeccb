"""The match state machine (services/order_match/matcher.py): buffering, duplicates, changes."""
from __future__ import annotations

import copy
import itertools
from decimal import Decimal

import pytest

from services.tools.generator import generate
from services.common import codes
from services.order_match import matcher

TIMEOUT = 60_000


@pytest.fixture(scope="module")
def sets():
    return generate(6, fault_share=0, seed=7)


def docs_of(s) -> list[dict]:
    return [copy.deepcopy(d) for d in s.documents]


def apply_all(bucket, docs, now=1000):
    events = []
    for d in docs:
        events += matcher.apply(bucket, d, now, TIMEOUT)
    return events


def ready(events):
    return [e for e in events if isinstance(e, matcher.Ready)]


def refusals(events):
    return [e for e in events if isinstance(e, matcher.Refusal)]


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_every_arrival_order_makes_the_declaration_ready_exactly_once(sets, perm):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    events = apply_all(bucket, [docs[i] for i in perm])
    assert ready(events) == [matcher.Ready(docs[0]["ebpCode"])]
    assert refusals(events) == []
    decl = bucket["declarations"][0]
    assert all(d is not None for d in matcher.documents(decl))
    assert bucket["waybills"] == []


def test_the_same_document_twice_is_a_no_op(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs[:2])
    before = copy.deepcopy(bucket)
    assert matcher.apply(bucket, copy.deepcopy(docs[1]), 2000, TIMEOUT) == []
    assert bucket == before


def test_same_content_at_another_decimal_scale_is_the_same_document(sets):
    order = docs_of(sets[0])[0]
    rescaled = copy.deepcopy(order)
    rescaled["acturalPaid"] = Decimal(f"{order['acturalPaid']}000")
    assert matcher.fingerprint(order) == matcher.fingerprint(rescaled)
    rescaled["acturalPaid"] += Decimal("0.01")
    assert matcher.fingerprint(order) != matcher.fingerprint(rescaled)


def test_second_apptype_1_with_another_guid_is_duplicate(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs[:1])
    again = copy.deepcopy(docs[0])
    again["guid"] = "F" * 36
    [refusal] = matcher.apply(bucket, again, 2000, TIMEOUT)
    assert refusal.code == codes.DUPLICATE
    assert matcher.documents(bucket["declarations"][0])[0]["guid"] == docs[0]["guid"]


@pytest.mark.parametrize("kind_index,app_type,code", [(0, "2", codes.LOCKED), (2, "3", codes.LOCKED),
                                                      (2, "2", codes.LOCKED), (0, "1", codes.DUPLICATE)])
def test_changes_after_verification_are_refused(sets, kind_index, app_type, code):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs)
    matcher.record_verdict(bucket, docs[0]["ebpCode"], matcher.VERIFIED, 3000)
    changed = copy.deepcopy(docs[kind_index])
    changed["guid"], changed["appType"] = "E" * 36, app_type
    [refusal] = matcher.apply(bucket, changed, 4000, TIMEOUT)
    assert refusal.code == code
    # and redelivery of the verified documents themselves stays a no-op
    assert all(matcher.apply(bucket, copy.deepcopy(d), 5000, TIMEOUT) == [] for d in docs)


def test_verified_bodies_are_kept_for_the_replay_window_then_only_guids(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs)
    matcher.record_verdict(bucket, docs[0]["ebpCode"], matcher.VERIFIED, 3000, "documents.order:1:7")
    decl = bucket["declarations"][0]
    matcher.drop_old_bodies(bucket, 3000 + 999, 1000)
    assert all(d is not None for d in matcher.documents(decl))
    assert matcher.next_deadline(bucket, TIMEOUT, 1000) == 4000
    matcher.drop_old_bodies(bucket, 3000 + 1000, 1000)
    assert matcher.documents(decl) == (None, None, None, None)
    assert set(decl["guids"]) == {"order", "payment", "logistics", "inventory"}
    assert matcher.next_deadline(bucket, TIMEOUT, 1000) is None
    # the waybill still finds its (bodiless) declaration, so a change to it is LOCKED
    changed = copy.deepcopy(docs[2])
    changed["guid"], changed["appType"] = "B" * 36, "2"
    [refusal] = matcher.apply(bucket, changed, 5000, TIMEOUT)
    assert refusal.code == codes.LOCKED


def test_a_decision_is_found_again_by_the_position_of_the_input_that_caused_it(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs)
    matcher.record_verdict(bucket, docs[0]["ebpCode"], matcher.VERIFIED, 3000, "documents.inventory:2:41")
    assert [d["ebpCode"] for d in matcher.replayed(bucket, "documents.inventory:2:41")] == [docs[0]["ebpCode"]]
    assert matcher.replayed(bucket, "documents.inventory:2:42") == []


def test_apptype_2_replaces_an_unmatched_document_and_reopens_a_rejected_one(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs)
    matcher.record_verdict(bucket, docs[0]["ebpCode"], matcher.REJECTED, 3000)
    fixed = copy.deepcopy(docs[1])
    fixed["guid"], fixed["appType"], fixed["note"] = "D" * 36, "2", "corrected"
    events = matcher.apply(bucket, fixed, 4000, TIMEOUT)
    assert ready(events) == [matcher.Ready(docs[0]["ebpCode"])]
    decl = bucket["declarations"][0]
    assert matcher.documents(decl)[1]["guid"] == "D" * 36 and decl["status"] == matcher.OPEN


def test_apptype_3_withdraws_and_the_declaration_waits_again(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs[:3])
    withdraw = copy.deepcopy(docs[1])
    withdraw["appType"] = "3"
    events = matcher.apply(bucket, withdraw, 2000, TIMEOUT)
    assert [type(e) for e in events] == [matcher.Withdrawn]
    decl = bucket["declarations"][0]
    assert decl["payment"] is None
    assert ready(matcher.apply(bucket, docs[3], 3000, TIMEOUT)) == []
    assert matcher.missing_kinds(bucket, decl) == ["payment"]


def test_withdrawing_what_is_not_there_is_refused(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    withdraw = copy.deepcopy(docs[0])
    withdraw["appType"] = "3"
    [refusal] = matcher.apply(bucket, withdraw, 1000, TIMEOUT)
    assert refusal.code == codes.NOT_FOUND
    assert [matcher.documents(d) for d in bucket["declarations"]] == [(None, None, None, None)]


@pytest.mark.parametrize("kind_index", [0, 1, 3])
def test_a_withdrawal_that_arrives_before_what_it_withdraws_still_wins(sets, kind_index):
    """Same appTime second: the withdrawal (appType 3) applies after the original, whatever
    the arrival order; the original arriving late is SUPERSEDED and never held."""
    docs = docs_of(sets[0])
    original = docs[kind_index]
    withdraw = copy.deepcopy(original)
    withdraw["guid"], withdraw["appType"] = "3" * 36, "3"
    bucket = matcher.new_bucket(original["orderNo"])
    assert [r.code for r in refusals(matcher.apply(bucket, withdraw, 1000, TIMEOUT))] == [codes.NOT_FOUND]
    events = apply_all(bucket, docs, now=2000)
    assert [r.code for r in refusals(events)] == [codes.SUPERSEDED] and ready(events) == []
    kind = ("order", "payment", "logistics", "inventory")[kind_index]
    assert matcher.missing_kinds(bucket, bucket["declarations"][0]) == [kind]
    # a new original after the withdrawal applies
    again = copy.deepcopy(original)
    again["guid"], again["appTime"] = "4" * 36, str(int(original["appTime"]) + 1)
    assert ready(matcher.apply(bucket, again, 3000, TIMEOUT)) == [matcher.Ready(original["ebpCode"])]


def test_a_change_that_arrives_before_its_original_is_kept(sets):
    docs = docs_of(sets[0])
    change = copy.deepcopy(docs[1])
    change["guid"], change["appType"], change["payTime"] = "2" * 36, "2", docs[1]["appTime"]
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    events = apply_all(bucket, [change, *docs])
    assert [r.code for r in refusals(events)] == [codes.SUPERSEDED]  # the original, not DUPLICATE
    assert matcher.documents(bucket["declarations"][0])[1]["guid"] == "2" * 36
    assert ready(events) == [matcher.Ready(docs[0]["ebpCode"])]


def test_of_two_originals_the_first_to_arrive_holds_and_the_other_is_duplicate(sets):
    docs = docs_of(sets[0])
    later = copy.deepcopy(docs[3])
    later["guid"], later["appTime"] = "9" * 36, str(int(docs[3]["appTime"]) + 100)
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    assert [r.code for r in refusals(apply_all(bucket, [later, docs[3]]))] == [codes.DUPLICATE]
    assert matcher.documents(bucket["declarations"][0])[3]["guid"] == "9" * 36


def test_a_waybill_waits_unattached_until_an_inventory_names_it(sets):
    order, payment, waybill, inventory = docs_of(sets[0])
    bucket = matcher.new_bucket(order["orderNo"])
    apply_all(bucket, [waybill])
    assert len(bucket["waybills"]) == 1 and bucket["declarations"] == []
    apply_all(bucket, [order, payment])
    assert matcher.missing_kinds(bucket, bucket["declarations"][0]) == ["inventory"]
    assert ready(matcher.apply(bucket, inventory, 2000, TIMEOUT))
    assert bucket["waybills"] == []


def test_an_inventory_changed_to_another_waybill_lets_the_old_one_go(sets):
    order, payment, waybill, inventory = docs_of(sets[0])
    bucket = matcher.new_bucket(order["orderNo"])
    apply_all(bucket, [order, payment, waybill, inventory])
    changed = copy.deepcopy(inventory)
    changed["guid"], changed["appType"], changed["logisticsNo"] = "C" * 36, "2", "OTHER0001"
    assert ready(matcher.apply(bucket, changed, 2000, TIMEOUT)) == []
    decl = bucket["declarations"][0]
    assert decl["logistics"] is None
    assert [matcher.document(w["doc"])["guid"] for w in bucket["waybills"]] == [waybill["guid"]]


def test_expiry_finds_open_declarations_past_their_deadline(sets):
    docs = docs_of(sets[0])
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    apply_all(bucket, docs[:2], now=1000)
    assert matcher.expired(bucket, 1000 + TIMEOUT - 1) == []
    assert [d["ebpCode"] for d in matcher.expired(bucket, 1000 + TIMEOUT)] == [docs[0]["ebpCode"]]
    assert matcher.next_deadline(bucket, TIMEOUT) == 1000 + TIMEOUT


def test_a_declaration_that_expired_refuses_late_documents(sets):
    order, payment, waybill, inventory = docs_of(sets[0])
    bucket = matcher.new_bucket(order["orderNo"])
    apply_all(bucket, [order, payment])
    matcher.record_verdict(bucket, order["ebpCode"], matcher.INCOMPLETE, 2000)
    assert matcher.apply(bucket, waybill, 3000, TIMEOUT) == []  # no inventory names it: it waits unattached
    [refusal] = matcher.apply(bucket, inventory, 3000, TIMEOUT)
    assert refusal.code == codes.INCOMPLETE
    assert bucket["declarations"][0]["inventory"] is None
