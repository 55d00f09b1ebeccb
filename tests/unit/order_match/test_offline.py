"""`sandan check`'s engine: order independence, quota order, waybill reuse, incompleteness."""
from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings, strategies as st

from services.common import pii
from services.tools.generator import generate
from services.common import codes
from services.order_match.offline import check
from services.order_match.rules import RuleSettings

SETS = generate(12, buyers=4, fault_share="0.5", seed=11)
DOCS = [d for s in SETS for d in s.documents]


def by_key(lines):
    return {(line["ebpCode"], line["orderNo"]): line for line in lines}


def test_every_generated_set_gets_its_expected_verdict():
    lines = by_key(check(copy.deepcopy(DOCS)))
    assert len(lines) == len(SETS)
    for s in SETS:
        line = lines[(s.order["ebpCode"], s.order["orderNo"])]
        assert line["status"] == s.expected_status, s.fault
        assert {f["code"] for f in line["failures"]} == set(s.expected_codes), s.fault


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(min_value=0, max_value=len(DOCS)))
def test_any_arrival_order_with_duplicates_gives_the_same_verdicts(rnd: random.Random, dups: int):
    baseline = check(copy.deepcopy(DOCS))
    shuffled = copy.deepcopy(DOCS) + [copy.deepcopy(rnd.choice(DOCS)) for _ in range(dups)]
    rnd.shuffle(shuffled)
    assert check(shuffled) == baseline


def test_output_is_sorted_by_platform_then_order_number():
    lines = check(copy.deepcopy(DOCS))
    keys = [(line["ebpCode"], line["orderNo"]) for line in lines]
    assert keys == sorted(keys)


def test_missing_documents_make_an_incomplete_verdict_naming_them():
    order, payment, waybill, inventory = copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents)
    [line] = check([order, inventory])
    assert line["status"] == "incomplete"
    assert line["missing"] == ["payment", "logistics"]
    assert {f["code"] for f in line["failures"]} == {codes.INCOMPLETE}


def _one_buyer_sets(n: int):
    """n verified sets of one buyer, each given a distinct inventory appTime."""
    sets = generate(n, buyers=1, fault_share=0, seed=5)
    return sets


def test_annual_quota_is_spent_in_the_order_declarations_complete():
    # each generated set's inventory is its last document: a set completes at its inventory's appTime
    sets = _one_buyer_sets(3)
    values = [s.order["goodsValue"] + s.order["freight"] + s.inventory.get("insuredFee", 0) for s in sets]
    buyer = pii.buyer_key(sets[0].order["buyerIdNumber"])
    year = int(sets[0].inventory["appTime"][:4])
    # leave room for exactly the first two declarations (by inventory appTime) and not the third
    ordered = sorted(range(3), key=lambda i: sets[i].inventory["appTime"])
    limit = Decimal(26000)
    seed = {(buyer, year): limit - values[ordered[0]] - values[ordered[1]]}
    docs = [copy.deepcopy(d) for s in reversed(sets) for d in s.documents]
    lines = by_key(check(docs, year_to_date=seed, settings=RuleSettings()))
    status = [lines[(sets[i].order["ebpCode"], sets[i].order["orderNo"])]["status"] for i in ordered]
    assert status == ["verified", "verified", "rejected"]
    last = lines[(sets[ordered[2]].order["ebpCode"], sets[ordered[2]].order["orderNo"])]
    assert [f["code"] for f in last["failures"]] == [codes.ANNUAL_LIMIT]


def test_exactly_the_annual_limit_passes():
    [s] = _one_buyer_sets(1)
    value = s.order["goodsValue"] + s.order["freight"] + s.inventory.get("insuredFee", 0)
    buyer = pii.buyer_key(s.order["buyerIdNumber"])
    year = int(s.inventory["appTime"][:4])
    [line] = check(copy.deepcopy(list(s.documents)), year_to_date={(buyer, year): Decimal(26000) - value},
                   settings=RuleSettings())
    assert line["status"] == "verified"
    [line] = check(copy.deepcopy(list(s.documents)),
                   year_to_date={(buyer, year): Decimal(26000) - value + Decimal("0.01")}, settings=RuleSettings())
    assert [f["code"] for f in line["failures"]] == [codes.ANNUAL_LIMIT]


def test_a_waybill_number_reused_for_another_order_is_refused():
    first, second = generate(2, fault_share=0, seed=9)
    second_docs = [copy.deepcopy(d) for d in second.documents]
    for doc in second_docs:
        if doc["message"] in ("CEB511", "CEB621"):
            doc["logisticsCode"], doc["logisticsNo"] = first.logistics["logisticsCode"], first.logistics["logisticsNo"]
    lines = by_key(check([copy.deepcopy(d) for d in first.documents] + second_docs))
    first_line = lines[(first.order["ebpCode"], first.order["orderNo"])]
    second_line = lines[(second.order["ebpCode"], second.order["orderNo"])]
    earlier, later = sorted([first_line, second_line],
                            key=lambda line: (first if line is first_line else second).inventory["appTime"])
    assert earlier["status"] == "verified"
    assert [f["code"] for f in later["failures"]] == [codes.WAYBILL_REUSED]


def _sharing_a_waybill(months_apart: int):
    """Two declarations whose waybill and inventory name the same carrier number, the second
    declared ``months_apart`` months after the first."""
    first, second = generate(2, fault_share=0, seed=9)
    first_docs = [copy.deepcopy(d) for d in first.documents]
    second_docs = [copy.deepcopy(d) for d in second.documents]
    later = f"{int(first.inventory['appTime'][:4]) + (int(first.inventory['appTime'][4:6]) - 1 + months_apart) // 12:04d}" \
            f"{(int(first.inventory['appTime'][4:6]) - 1 + months_apart) % 12 + 1:02d}" + first.inventory["appTime"][6:]
    for doc in second_docs:
        if doc["message"] in ("CEB511", "CEB621"):
            doc["logisticsCode"], doc["logisticsNo"] = first.logistics["logisticsCode"], first.logistics["logisticsNo"]
        doc["appTime"] = later
    for doc in first_docs:
        doc["appTime"] = first.inventory["appTime"]
    lines = by_key(check(first_docs + second_docs))
    return lines[(second.order["ebpCode"], second.order["orderNo"])]


def test_a_waybill_number_is_held_for_six_months_offline_as_in_the_stream():
    assert [f["code"] for f in _sharing_a_waybill(5)["failures"]] == [codes.WAYBILL_REUSED]
    assert codes.WAYBILL_REUSED not in {f["code"] for f in _sharing_a_waybill(7)["failures"]}


def _later(app_time: str, seconds: int) -> str:
    return f"{datetime.strptime(app_time, '%Y%m%d%H%M%S') + timedelta(seconds=seconds):%Y%m%d%H%M%S}"


def _naming_the_waybill_of(first, second, after_docs: list[dict]) -> list[dict]:
    """``second``'s documents with its waybill and inventory naming ``first``'s carrier number,
    sent a second after the last of ``after_docs``."""
    docs = [copy.deepcopy(d) for d in second.documents]
    for doc in docs:
        if doc["message"] in ("CEB511", "CEB621"):
            doc["logisticsCode"], doc["logisticsNo"] = first.logistics["logisticsCode"], first.logistics["logisticsNo"]
        doc["appTime"] = _later(max(d["appTime"] for d in after_docs), 1)
    return docs


def test_a_rejected_declaration_still_claims_its_waybill_number():
    """DOMAIN §2a: the first orderNo naming a waybill claims it, whatever its verdict."""
    first, second = generate(2, fault_share=0, seed=9)
    first_docs = [copy.deepcopy(d) for d in first.documents]
    first_docs[0]["taxTotal"] += Decimal("1.00")  # TAX_TOTAL and ORDER_TOTAL: rejected
    second_docs = _naming_the_waybill_of(first, second, first_docs)
    lines = by_key(check(first_docs + second_docs))
    assert lines[(first.order["ebpCode"], first.order["orderNo"])]["status"] == "rejected"
    assert [f["code"] for f in lines[(second.order["ebpCode"], second.order["orderNo"])]["failures"]] \
        == [codes.WAYBILL_REUSED]


def test_an_incomplete_declaration_whose_inventory_named_the_waybill_first_still_claims_it():
    """DOMAIN §2a: "claimed by the first orderNo whose declaration names it, whatever that
    declaration's verdict": INCOMPLETE is a verdict too; its inventory named the number first."""
    first, second = generate(2, fault_share=0, seed=9)
    first_docs = [copy.deepcopy(d) for d in (first.order, first.inventory)]  # no payment, no waybill
    second_docs = _naming_the_waybill_of(first, second, first_docs)
    lines = by_key(check(first_docs + second_docs))
    assert lines[(first.order["ebpCode"], first.order["orderNo"])]["status"] == "incomplete"
    assert [f["code"] for f in lines[(second.order["ebpCode"], second.order["orderNo"])]["failures"]] \
        == [codes.WAYBILL_REUSED]
    # named later, the number was the complete declaration's
    for doc in second_docs:
        doc["appTime"] = _later(min(d["appTime"] for d in first_docs), -1)
    lines = by_key(check(first_docs + second_docs))
    assert lines[(second.order["ebpCode"], second.order["orderNo"])]["status"] == "verified"


def test_a_refused_or_withdrawn_inventory_claims_nothing():
    first, second = generate(2, fault_share=0, seed=9)
    stale = dict(copy.deepcopy(first.inventory), appTime="20990101000000")  # APP_TIME: refused, as if never sent
    second_docs = [copy.deepcopy(d) for d in second.documents]
    for doc in second_docs:
        if doc["message"] in ("CEB511", "CEB621"):
            doc["logisticsCode"], doc["logisticsNo"] = first.logistics["logisticsCode"], first.logistics["logisticsNo"]
    lines = by_key(check([copy.deepcopy(first.order), stale] + second_docs))
    assert lines[(second.order["ebpCode"], second.order["orderNo"])]["status"] == "verified"


def test_a_withdrawal_with_the_same_app_time_wins_whatever_the_file_order():
    s = generate(1, fault_share=0, seed=12)[0]
    docs = [copy.deepcopy(d) for d in s.documents]
    withdraw = dict(copy.deepcopy(s.payment), guid="3" * 36, appType="3")
    for order in ([withdraw, *docs], [*docs, withdraw]):
        [line] = check(copy.deepcopy(order))
        assert line["status"] == "incomplete" and line["missing"] == ["payment"]
        assert line["refused"] == []


def test_an_inventory_resent_as_new_is_duplicate_on_its_line():
    s = generate(1, fault_share=0, seed=13)[0]
    again = dict(copy.deepcopy(s.inventory), guid="D" * 36, appTime=_later(s.inventory["appTime"], 60))
    [line] = check([copy.deepcopy(d) for d in s.documents] + [again])
    assert line["status"] == "verified"
    assert [(r["guid"], r["code"], r["field"]) for r in line["refused"]] == [
        ("D" * 36, codes.DUPLICATE, "InventoryHead/appType")]
    assert line["refused"][0]["message"].startswith("an inventory with guid ")


def test_every_line_carries_refused_and_refusals_of_no_declaration_have_a_line_of_their_own():
    s = generate(1, fault_share=0, seed=14)[0]
    stray = {"guid": "X" * 36, "code": "INVALID_DOCUMENT", "message": "CEB311: field OrderHead/orderNo: missing",
             "ebpCode": None, "orderNo": None}
    lines = check([copy.deepcopy(d) for d in s.documents], refused=[stray])
    assert [line["status"] for line in lines] == ["refused", "verified"]
    assert lines[0]["refused"] == [{"guid": "X" * 36, "code": "INVALID_DOCUMENT", "field": None,
                                    "message": stray["message"]}]
    assert lines[1]["refused"] == []


def test_a_waybill_alone_gets_a_line_naming_what_it_lacks():
    """Every document is answered: a waybill carries no ebpCode, so alone it is a line of its own."""
    waybill = copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents[2])
    [line] = check([waybill])
    assert (line["ebpCode"], line["orderNo"], line["status"]) == ("", waybill["orderNo"], "incomplete")
    assert line["missing"] == ["order", "payment", "inventory"]


def test_an_inventory_naming_another_waybill_than_its_order_numbers_one_is_inventory_parties():
    # DOMAIN §2 INVENTORY_PARTIES: the inventory's logisticsCode/logisticsNo = the waybill's
    for field, value in (("logisticsNo", "OTHER00000001"), ("logisticsCode", "3301980999")):
        order, payment, waybill, inventory = copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents)
        inventory[field] = value
        [line] = check([order, payment, waybill, inventory])
        assert (line["ebpCode"], line["status"], line["missing"]) == (order["ebpCode"], "rejected", [])
        assert [(f["code"], f["field"]) for f in line["failures"]] == [(codes.INVENTORY_PARTIES,
                                                                       f"InventoryHead/{field}")]


def test_a_payment_or_inventory_naming_another_platform_is_decided_with_the_order():
    # DOMAIN §2 PAYMENT_REFERENCE (payment ebpCode = order's) and INVENTORY_PARTIES (inventory
    # ebpCode = order's): a document naming another ebpCode is keyed apart, and joins at the end
    for kind, code, field in (("payment", codes.PAYMENT_REFERENCE, "PaymentHead/ebpCode"),
                              ("inventory", codes.INVENTORY_PARTIES, "InventoryHead/ebpCode")):
        docs = dict(zip(("order", "payment", "logistics", "inventory"),
                        copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents)))
        docs[kind]["ebpCode"] = "3301960000"
        [line] = check(list(docs.values()))
        assert (line["ebpCode"], line["status"]) == (docs["order"]["ebpCode"], "rejected"), kind
        assert [(f["code"], f["field"]) for f in line["failures"]] == [(code, field)], kind


def test_two_payments_naming_other_platforms_are_not_guessed_between():
    order, payment, waybill, inventory = copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents)
    first = dict(payment, ebpCode="3301960000")
    second = dict(payment, ebpCode="3301960001", guid="0000000B-0000-4000-8000-000000000001")
    lines = check([order, first, second, waybill, inventory])
    assert sorted((line["ebpCode"], line["status"], tuple(line["missing"])) for line in lines) == [
        ("3301960000", "incomplete", ("order", "logistics", "inventory")),
        ("3301960001", "incomplete", ("order", "logistics", "inventory")),
        (order["ebpCode"], "incomplete", ("payment",))]


def test_with_two_waybills_none_named_neither_is_taken():
    order, payment, waybill, inventory = copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents)
    inventory["logisticsNo"] = "OTHER00000001"  # the inventory names neither waybill of the carrier
    second = dict(waybill, guid="0000000A-0000-4000-8000-000000000001", logisticsNo="OTHER00000002")
    lines = check([order, payment, waybill, second, inventory])
    assert [(line["ebpCode"], line["status"], line["missing"]) for line in lines] == [
        ("", "incomplete", ["inventory"]), ("", "incomplete", ["inventory"]),  # the waybills: no inventory names them
        (order["ebpCode"], "incomplete", ["logistics"])]


def test_a_waybill_held_by_a_declaration_without_inventory_is_not_answered_twice():
    order, payment, waybill, _ = copy.deepcopy(generate(1, fault_share=0, seed=3)[0].documents)
    [line] = check([order, payment, waybill])
    assert line["ebpCode"] == order["ebpCode"] and line["missing"] == ["inventory"]


def _after(doc: dict, minutes: int = 1, **change) -> dict:
    """``doc`` changed (appType 2 unless given) ``minutes`` after the last document of its set."""
    return dict(doc, guid=f"{minutes:08X}-0000-4000-8000-{len(change):012d}",
                appType=change.pop("appType", "2"), **change)


def _later_than_all(s, doc: dict, minutes: int, **change) -> dict:
    last = max(datetime.strptime(d["appTime"], "%Y%m%d%H%M%S") for d in s.documents)
    return _after(doc, minutes, appTime=f"{last + timedelta(minutes=minutes):%Y%m%d%H%M%S}", **change)


def test_an_order_or_waybill_changed_after_verification_is_locked():
    # DOMAIN §2 LOCKED and §2a: offline, its line carries the refusal; the verdict stands
    [s] = generate(1, fault_share=0, seed=21)
    cases = {"order changed": _later_than_all(s, s.order, 1, consignee=s.order["consignee"] + "X"),
             "order withdrawn": _later_than_all(s, s.order, 2, appType="3"),
             "waybill withdrawn": _later_than_all(s, s.logistics, 3, appType="3")}
    for name, late in cases.items():
        [line] = check(copy.deepcopy(list(s.documents)) + [late])
        assert line["status"] == "verified", name
        assert [(r["guid"], r["code"]) for r in line["refused"]] == [(late["guid"], codes.LOCKED)], name


def test_a_change_before_the_declaration_is_complete_is_applied_not_locked():
    [s] = generate(1, fault_share=0, seed=21)
    first = min(datetime.strptime(d["appTime"], "%Y%m%d%H%M%S") for d in (s.payment, s.logistics, s.inventory))
    order = dict(s.order, appTime=f"{first - timedelta(minutes=2):%Y%m%d%H%M%S}")
    change = _after(order, 1, appTime=f"{first - timedelta(minutes=1):%Y%m%d%H%M%S}",
                    consignee=s.order["consignee"] + "X")
    [line] = check([order, change] + copy.deepcopy([s.payment, s.logistics, s.inventory]))
    assert line["refused"] == []
    assert [f["code"] for f in line["failures"]] == [codes.CONSIGNEE]  # the changed order was matched


def test_a_rejected_declaration_corrected_later_is_decided_again_one_line_with_the_last_verdict():
    [s] = generate(1, fault_share=0, seed=21)
    wrong = dict(s.payment, amountPaid=s.payment["amountPaid"] + 1)
    fixed = _later_than_all(s, s.payment, 1, amountPaid=s.payment["amountPaid"])
    [line] = check([copy.deepcopy(d) for d in (s.order, wrong, s.logistics, s.inventory)])
    assert [f["code"] for f in line["failures"]] == [codes.PAYMENT_AMOUNT]
    [line] = check([copy.deepcopy(d) for d in (s.order, wrong, s.logistics, s.inventory)] + [fixed])
    assert (line["status"], line["failures"], line["refused"]) == ("verified", [], [])
