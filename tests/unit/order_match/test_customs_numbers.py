"""preNo and invtNo (DOMAIN §5, services/order_match/customs_numbers.py): their form, once per
declaration, and on the verdict and the inventory's receipt the stream publishes."""
from __future__ import annotations

import asyncio
import copy
import re

from services.common.clock import parse_app_time
from services.tools.generator import generate
from services.order_match import matcher
from services.common.customs_numbers import MemoryCustomsNumbers, NumberRequest
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

NO_APP_TIME_CHECK = 10**15
MAR_3 = int(parse_app_time("20250303150000").timestamp() * 1000)
MAR_4 = int(parse_app_time("20250304000100").timestamp() * 1000)


def number(store, *requests):
    return asyncio.run(store.number_many(list(requests)))


def test_a_pre_entry_number_is_b_the_china_date_and_a_sequence_of_that_day():
    store = MemoryCustomsNumbers()
    a, b = number(store, NumberRequest("E:1", MAR_3), NumberRequest("E:2", MAR_3))
    [c] = number(store, NumberRequest("E:3", MAR_4))
    assert (a.pre_no, b.pre_no, c.pre_no) == ("B20250303000000001", "B20250303000000002", "B20250304000000001")
    assert a.invt_no is None  # not verified yet
    # 00:01 on 4 March in China is still 3 March in UTC: the date is China's
    assert MAR_4 < int(parse_app_time("20250304080000").timestamp() * 1000)


def test_an_inventory_number_is_customs_code_year_i_and_a_sequence():
    store = MemoryCustomsNumbers()
    a, b, c = number(store, NumberRequest("E:1", MAR_3, verify=True, customs_code="2991"),
                     NumberRequest("E:2", MAR_3, verify=True, customs_code="2991"),
                     NumberRequest("E:3", MAR_3, verify=True, customs_code="5141"))
    assert (a.invt_no, b.invt_no, c.invt_no) == ("29912025I000000001", "29912025I000000002", "51412025I000000001")
    assert all(len(n) == 18 for x in (a, b, c) for n in (x.pre_no, x.invt_no))


def test_a_declaration_keeps_its_numbers_whenever_it_is_numbered_again():
    store = MemoryCustomsNumbers()
    [first] = number(store, NumberRequest("E:1", MAR_3))
    [verified] = number(store, NumberRequest("E:1", MAR_4, verify=True, customs_code="2991", cop_no="C1"))
    [again] = number(store, NumberRequest("E:1", MAR_4 + 10**9, verify=True, customs_code="5141"))
    assert verified.pre_no == first.pre_no == again.pre_no
    assert again.invt_no == verified.invt_no == "29912025I000000001"
    assert again.cop_no == "C1"


def engine(numbers):
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=60_000, app_time_skew_ms=NO_APP_TIME_CHECK, numbers=numbers)


def feed(proc, bucket, docs, now, first_offset=0):
    outputs = []
    for offset, doc in enumerate(docs, first_offset):
        outputs += asyncio.run(proc.on_document(bucket, copy.deepcopy(doc), now, f"documents.x:0:{offset}"))
    return outputs


def inventory_receipts(outputs):
    return [o.record for o in outputs if o.topic == "receipts" and o.record["message"] == "CEB622"]


def test_a_verified_declaration_carries_its_numbers_on_the_verdict_and_the_inventory_receipt():
    sets = generate(2, fault_share=0, seed=41)
    proc = engine(MemoryCustomsNumbers())
    numbered = []
    for s in sets:
        outputs = feed(proc, matcher.new_bucket(s.order["orderNo"]), s.documents, MAR_3)
        [verdict] = [o.record for o in outputs if o.topic == "declarations.verdicts"]
        [matched] = [o.record for o in outputs if o.topic == "declarations.matched"]
        [receipt] = inventory_receipts(outputs)
        inventory = verdict["inventory"]
        assert verdict["status"] == "verified" and matched is verdict
        assert re.fullmatch(r"B20250303\d{9}", inventory["preNo"])
        assert inventory["invtNo"] == f"{s.inventory['customsCode']}2025I{inventory['invtNo'][-9:]}"
        assert (receipt["preNo"], receipt["invtNo"]) == (inventory["preNo"], inventory["invtNo"])
        assert receipt["copNo"] == s.inventory["copNo"]
        assert "invtNo" not in s.inventory or s.inventory.get("invtNo") != inventory["invtNo"]
        numbered.append((inventory["preNo"], inventory["invtNo"]))
    assert len({p for p, _ in numbered}) == len({i for _, i in numbered}) == 2


def test_a_replayed_declaration_gets_the_same_numbers():
    s = generate(1, fault_share=0, seed=42)[0]
    proc = engine(MemoryCustomsNumbers())
    bucket = matcher.new_bucket(s.order["orderNo"])
    first = inventory_receipts(feed(proc, bucket, s.documents, MAR_3))
    # the worker crashed before its outputs were acknowledged: the last record comes again, a day later
    again = inventory_receipts(asyncio.run(proc.on_document(bucket, copy.deepcopy(s.documents[-1]), MAR_4,
                                                            f"documents.x:0:{len(s.documents) - 1}")))
    assert [(r["preNo"], r["invtNo"]) for r in again] == [(r["preNo"], r["invtNo"]) for r in first]
    assert first[0]["invtNo"] is not None


def test_a_rejected_or_incomplete_inventory_gets_a_pre_entry_number_and_no_inventory_number():
    rejected = generate(1, fault_share=0, seed=43)[0]
    rejected.payment["amountPaid"] += 1  # PAYMENT_AMOUNT
    proc = engine(MemoryCustomsNumbers())
    outputs = feed(proc, matcher.new_bucket(rejected.order["orderNo"]), rejected.documents, MAR_3)
    [receipt] = inventory_receipts(outputs)
    assert [o.record["status"] for o in outputs if o.topic == "declarations.verdicts"] == ["rejected"]
    assert receipt["preNo"].startswith("B20250303") and receipt["invtNo"] is None

    lonely = generate(1, fault_share=0, seed=44)[0]
    bucket = matcher.new_bucket(lonely.order["orderNo"])
    feed(proc, bucket, [lonely.inventory], MAR_3)
    expired = asyncio.run(proc.number(proc.expire(bucket, MAR_3, all_open=True), MAR_3))
    [receipt] = inventory_receipts(expired)
    assert receipt["returnStatus"] == "100" and len(receipt["preNo"]) == 18 and receipt["invtNo"] is None


def test_an_inventory_sent_again_as_new_is_refused_with_the_declarations_numbers():
    s = generate(1, fault_share=0, seed=45)[0]
    proc = engine(MemoryCustomsNumbers())
    bucket = matcher.new_bucket(s.order["orderNo"])
    [accepted] = inventory_receipts(feed(proc, bucket, s.documents, MAR_3))
    again = {**copy.deepcopy(s.inventory), "guid": "FFFFFFFF-0000-4000-8000-000000000001"}
    [refused] = inventory_receipts(feed(proc, bucket, [again], MAR_4, first_offset=10))
    assert refused["returnStatus"] == "-621004"
    assert (refused["preNo"], refused["invtNo"]) == (accepted["preNo"], accepted["invtNo"])
