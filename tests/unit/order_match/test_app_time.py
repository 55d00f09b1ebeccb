"""APP_TIME (DOMAIN §2a): a document dated more than the allowed skew after its arrival is
refused on its own and its declaration goes on as if it never came."""
from __future__ import annotations

import asyncio
import copy
from datetime import datetime

from services.common.clock import CHINA
from services.tools.generator import generate
from services.common import codes
from services.order_match import matcher
from services.order_match.offline import check
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

SKEW_MS = 300_000


def engine(skew_ms: int | None = SKEW_MS) -> MatchProcessor:
    return MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                          rates=load_rates(), timeout_ms=60_000, app_time_skew_ms=skew_ms)


def at_ms(app_time: str) -> int:
    return int(datetime.strptime(app_time, "%Y%m%d%H%M%S").replace(tzinfo=CHINA).timestamp()) * 1000


def run(processor, docs, arrived_ms):
    bucket = matcher.new_bucket(docs[0]["orderNo"])
    outputs = []
    for doc in docs:
        outputs += asyncio.run(processor.on_document(bucket, doc, arrived_ms))
    return bucket, outputs


def test_a_forward_dated_inventory_is_refused_and_the_declaration_waits_without_it():
    docs = [copy.deepcopy(d) for d in generate(1, fault_share=0, seed=61)[0].documents]
    arrived = at_ms(docs[3]["appTime"]) - SKEW_MS - 1000  # the inventory says 5 min 1 s after its arrival
    bucket, outputs = run(engine(), docs, arrived)
    [receipt] = [o.record for o in outputs if o.topic == "receipts"]
    assert receipt["documentGuid"] == docs[3]["guid"] and receipt["returnStatus"] == "100"
    assert [(f["code"], f["field"]) for f in receipt["failures"]] == [(codes.APP_TIME, "InventoryHead/appTime")]
    assert not [o for o in outputs if o.topic == "declarations.verdicts"]
    assert matcher.missing_kinds(bucket, bucket["declarations"][0]) == ["inventory"]


def test_an_app_time_within_the_skew_is_taken():
    docs = [copy.deepcopy(d) for d in generate(1, fault_share=0, seed=61)[0].documents]
    arrived = at_ms(docs[3]["appTime"]) - SKEW_MS
    _, outputs = run(engine(), docs, arrived)
    assert [o.record["status"] for o in outputs if o.topic == "declarations.verdicts"] == ["verified"]


def test_the_skew_is_the_setting(monkeypatch):
    monkeypatch.setenv("SANDAN_APP_TIME_SKEW", "3600")
    docs = [copy.deepcopy(d) for d in generate(1, fault_share=0, seed=61)[0].documents]
    _, outputs = run(engine(None), docs, at_ms(docs[3]["appTime"]) - 3_000_000)
    assert [o.record["status"] for o in outputs if o.topic == "declarations.verdicts"] == ["verified"]


def test_an_app_time_that_is_no_instant_is_refused_not_raised():
    docs = [copy.deepcopy(d) for d in generate(1, fault_share=0, seed=61)[0].documents]
    docs[1]["appTime"] = "ABCDEFGHIJKLMN"
    bucket, outputs = run(engine(), docs, at_ms("20300101000000"))
    assert [f["code"] for o in outputs if o.topic == "receipts" for f in o.record["failures"]] == [codes.APP_TIME]
    assert matcher.missing_kinds(bucket, bucket["declarations"][0]) == ["payment"]


def test_offline_the_clock_of_the_run_is_the_arrival_and_the_refusal_is_on_the_line():
    s = generate(1, fault_share=0, seed=62)[0]
    docs = [copy.deepcopy(d) for d in s.documents]
    docs[3]["appTime"] = "20990101000000"
    [line] = check(docs)  # the machine's clock
    assert line["status"] == "incomplete" and line["missing"] == ["inventory"]
    assert [(r["guid"], r["code"]) for r in line["refused"]] == [(docs[3]["guid"], codes.APP_TIME)]
    [line] = check(docs, now_ms=at_ms("20990101000000"))
    assert line["status"] == "verified" and line["refused"] == []
