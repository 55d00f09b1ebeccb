"""The annual quota's key and year (DOMAIN §3): one buyer per ID number (trimmed, upper-cased,
whatever the ID type), counted in the China-time year the inventory reached sandan (the
broker's append time), offline in the year of its appTime; never in a year the sender's
clock chooses."""
from __future__ import annotations

import asyncio
import copy
import io
import json
from datetime import datetime
from decimal import Decimal

import fastavro
from hypothesis import given, strategies as st

from services.common import pii
from services.common.avro import MAGIC, SCHEMA_DIR, SUPERSEDED, codec
from services.common.clock import CHINA
from services.common import codes
from services.order_match import batch, matcher
from services.order_match.batch import Arrival
from services.order_match.decide import china_year, quota_year
from services.order_match.offline import check
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

from .samples import BUYER, base_documents

NO_APP_TIME_CHECK = 10**15  # lets a forward-dated inventory through, to see which year it would count in
FULL = Decimal(26000)


def ms(china_time: str) -> int:
    return int(datetime.strptime(china_time, "%Y%m%d%H%M%S").replace(tzinfo=CHINA).timestamp()) * 1000


def engine(quota: MemoryQuotaStore, skew_ms: int | None = NO_APP_TIME_CHECK) -> MatchProcessor:
    return MatchProcessor(quota=quota, waybills=MemoryWaybillRegistry(), settings=RuleSettings(), rates=load_rates(),
                          timeout_ms=86_400_000, app_time_skew_ms=skew_ms)


def documents(*, id_number: str = BUYER["id"], id_type: str = "1", inventory_app_time: str | None = None,
              order_no: str = "SO2025030300001") -> list[dict]:
    docs = base_documents()
    for kind, type_key, number_key in (("order", "buyerIdType", "buyerIdNumber"),
                                       ("payment", "payerIdType", "payerIdNumber"),
                                       ("inventory", "buyerIdType", "buyerIdNumber")):
        docs[kind][type_key], docs[kind][number_key] = id_type, id_number
    if inventory_app_time:
        docs["inventory"]["appTime"] = inventory_app_time
    for doc in docs.values():
        doc["orderNo"] = order_no
    docs["logistics"]["logisticsNo"] = docs["inventory"]["logisticsNo"] = f"SD{order_no}"  # one waybill per order
    return [docs["order"], docs["payment"], docs["logistics"], docs["inventory"]]


def stream(processor: MatchProcessor, arrivals: list[tuple[dict, int]], table: dict | None = None) -> list:
    """Documents through the stream worker's path (``batch.run``), one batch per arrival, each
    bucket kept as its wire record between batches (as the changelog table keeps it)."""
    wire = codec()
    table = {} if table is None else table
    outputs = []
    for offset, (doc, arrived_ms) in enumerate(arrivals):
        raw = matcher.wire_record(doc)
        arrival = Arrival(doc["orderNo"], matcher.document(raw), raw, f"documents.x:0:{offset}", arrived_ms)

        def load(a: Arrival) -> dict:
            held = table.get(a.key)
            return wire.decode(held)[1] if held is not None else matcher.new_bucket(a.key)

        done = asyncio.run(batch.run(processor, [arrival], load, arrived_ms))
        for key, (bucket, _) in done.buckets.items():
            table[key] = wire.encode("sandan.MatchBucket", bucket)
        outputs += done.outputs
    return outputs


def verdicts(outputs) -> list[dict]:
    return [o.record for o in outputs if o.topic == "declarations.verdicts"]


# --- the year ------------------------------------------------------------------------------

def test_an_inventory_dated_2099_counts_in_the_year_it_arrived():
    """A buyer who has spent 26,000 in 2026 gets nothing more by dating the inventory 2099."""
    quota = MemoryQuotaStore({(pii.buyer_key(BUYER["id"]), 2026): FULL})
    arrived = ms("20260615120000")
    outputs = stream(engine(quota), [(doc, arrived) for doc in documents(inventory_app_time="20990101000000")])
    [verdict] = verdicts(outputs)
    assert verdict["status"] == "rejected"
    assert [f["code"] for f in verdict["failures"]] == [codes.ANNUAL_LIMIT]
    assert verdict["quotaYear"] == 2026


def test_with_the_default_skew_a_2099_inventory_is_refused_and_nothing_verifies():
    quota = MemoryQuotaStore({(pii.buyer_key(BUYER["id"]), 2026): FULL})
    arrived = ms("20260615120000")
    outputs = stream(engine(quota, skew_ms=None), [(doc, arrived) for doc in documents(inventory_app_time="20990101000000")])
    assert not any(v["status"] == "verified" for v in verdicts(outputs))
    assert codes.APP_TIME in {f["code"] for o in outputs if o.topic == "receipts" for f in o.record["failures"]}


def test_a_backdated_inventory_counts_in_its_arrival_year():
    quota = MemoryQuotaStore({(pii.buyer_key(BUYER["id"]), 2025): FULL})  # 2025 is spent, 2026 is not
    arrived = ms("20260101000010")
    outputs = stream(engine(quota), [(doc, arrived) for doc in documents(inventory_app_time="20251231235000")])
    [verdict] = verdicts(outputs)
    assert (verdict["status"], verdict["quotaYear"]) == ("verified", 2026)
    assert asyncio.run(quota.year_to_date(verdict["buyerKey"], 2026)) == verdict["taxableValue"] == Decimal(310)


def test_the_year_is_the_inventory_arrival_not_the_last_document_s():
    """The inventory reaches Kafka on 31 December; the payment that completes the declaration
    on 1 January. The bucket (a wire record between the two) remembers the inventory's arrival."""
    quota = MemoryQuotaStore({(pii.buyer_key(BUYER["id"]), 2027): FULL})
    order, payment, waybill, inventory = documents(inventory_app_time="20261231235800")
    new_year = ms("20270101000005")
    table: dict = {}
    stream(engine(quota), [(order, ms("20261231235000")), (waybill, ms("20261231235500")),
                           (inventory, ms("20261231235900"))], table)
    stored = codec().decode(table[order["orderNo"]])[1]
    assert stored["declarations"][0]["inventoryAt"] == ms("20261231235900")
    [verdict] = verdicts(stream(engine(quota), [(payment, new_year)], table))
    assert (verdict["status"], verdict["quotaYear"]) == ("verified", 2026)


def test_a_replay_decides_in_the_same_year():
    """A decision emitted again after a crash (the completing record delivered again) reserves
    under the year the bucket holds, so the idempotent reservation finds itself."""
    quota = MemoryQuotaStore()
    processor = engine(quota)
    docs = documents(inventory_app_time="20261231235800")
    table: dict = {}
    first = verdicts(stream(processor, [(doc, ms("20261231235900")) for doc in docs], table))
    bucket = codec().decode(table[docs[0]["orderNo"]])[1]
    again = verdicts(asyncio.run(processor.replay(bucket, "documents.x:0:3", ms("20270101010000"))))
    assert [v["quotaYear"] for v in first + again] == [2026, 2026]
    assert asyncio.run(quota.year_to_date(first[0]["buyerKey"], 2026)) == Decimal(310)


def test_offline_the_year_is_the_inventory_app_time():
    docs = documents(inventory_app_time="20250303130000")
    key = pii.buyer_key(BUYER["id"])
    [line] = check(copy.deepcopy(docs), year_to_date={(key, 2025): FULL}, settings=RuleSettings())
    assert [f["code"] for f in line["failures"]] == [codes.ANNUAL_LIMIT]
    [line] = check(copy.deepcopy(docs), year_to_date={(key, 2024): FULL, (key, 2026): FULL}, settings=RuleSettings())
    assert line["status"] == "verified"


def test_offline_an_inventory_dated_2099_verifies_nothing():
    key = pii.buyer_key(BUYER["id"])
    lines = check(documents(inventory_app_time="20990101000000"), year_to_date={(key, 2026): FULL},
                  settings=RuleSettings(), now_ms=ms("20260615120000"))
    assert not any(line["status"] == "verified" for line in lines)


def test_quota_year_of_arrival_and_of_app_time():
    inventory = {"appTime": "20990101000000"}
    assert quota_year(inventory, ms("20261231235959")) == 2026
    assert quota_year(inventory, ms("20270101000000")) == 2027
    assert quota_year({"appTime": "20251231235959"}) == 2025
    assert china_year(ms("20270101000000") - 1) == 2026  # 15:59:59.999 UTC on 31 December


@given(st.one_of(st.none(), st.integers(), st.text(max_size=20),
                 st.sampled_from(["ABCDEFGHIJKLMN", "20261301000000", "+2026010100000", "00000101000000",
                                  "２０２６０１０１０００００", "99991231235959", "2026"])),
       st.one_of(st.none(), st.integers(min_value=-2**63, max_value=2**63 - 1)))
def test_quota_year_never_raises(app_time, arrived_ms):
    year = quota_year({"appTime": app_time}, arrived_ms)
    assert isinstance(year, int) and 1 <= year <= 9999


def test_a_bucket_written_before_inventory_at_existed_reads_with_none():
    path = SCHEMA_DIR / SUPERSEDED / "matchBucket.v3.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    decl = {"ebpCode": "E", "status": "open", "order": None, "payment": None, "logistics": None, "inventory": None,
            "guids": {}, "fingerprints": {}, "firstAt": 1, "lastAt": 2, "deadline": 3, "decidedAt": None,
            "decidedBy": None, "waybillKey": None, "marks": {"order": "20250303091500 1"}}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), {"orderNo": "O1", "declarations": [decl],
                                                                     "waybills": []})
    tag = b"sandan.MatchBucket/3"
    name, bucket = codec().decode(bytes([MAGIC, len(tag)]) + tag + body.getvalue())
    assert name == "sandan.MatchBucket"
    assert bucket["declarations"][0]["inventoryAt"] is None
    assert bucket["declarations"][0]["marks"] == decl["marks"]


# --- the key -------------------------------------------------------------------------------

NUMBER_X = "33010619880315771X"


def test_a_lower_case_check_digit_is_the_same_buyer():
    key = pii.buyer_key(NUMBER_X)
    [line] = check(documents(id_number=NUMBER_X.lower()), year_to_date={(key, 2025): FULL}, settings=RuleSettings())
    assert [f["code"] for f in line["failures"]] == [codes.ANNUAL_LIMIT]


def test_the_same_number_under_id_type_2_is_the_same_buyer_and_fails_both_rules():
    key = pii.buyer_key(BUYER["id"])
    [line] = check(documents(id_type="2"), year_to_date={(key, 2025): FULL}, settings=RuleSettings())
    assert line["status"] == "rejected"
    assert {f["code"] for f in line["failures"]} == {codes.PAYER_IDENTITY, codes.ANNUAL_LIMIT}


def test_in_the_stream_two_spellings_and_two_id_types_share_one_total():
    """A verified declaration reserves under the verdict's buyerKey (the key tax_guarantee and
    returns release by); the same person spelled ``x`` then declared under type 2 meets it."""
    key = pii.buyer_key(NUMBER_X)
    quota = MemoryQuotaStore({(key, 2026): FULL - Decimal(310)})  # room for exactly one declaration of 310
    processor = engine(quota)
    arrived = ms("20260615120000")
    table: dict = {}
    outputs = stream(processor, [(doc, arrived) for doc in documents(id_number=NUMBER_X.lower(), order_no="SO-A")],
                     table)
    [verified] = verdicts(outputs)
    assert (verified["status"], verified["buyerKey"], verified["quotaYear"]) == ("verified", key, 2026)
    assert asyncio.run(quota.year_to_date(key, 2026)) == FULL
    second = stream(processor, [(doc, arrived) for doc in documents(id_number=f" {NUMBER_X} ", id_type="2",
                                                                     order_no="SO-B")], table)
    [rejected] = verdicts(second)
    assert {f["code"] for f in rejected["failures"]} == {codes.PAYER_IDENTITY, codes.ANNUAL_LIMIT}
    assert rejected["buyerKey"] == verified["buyerKey"]
