"""The returns worker on the real Kafka and Redis (issue: returns service): cancellations and
returns give the tax back to the guarantee and the taxable value back to the buyer's quota
exactly once, although every input record is produced twice.

Declarations are fed to declarations.cleared directly, as Verdict records built from
generated declaration sets (what the guarantee service publishes), with their quota reserved
in Redis the way order_match reserves it. Times are relative to now: the service's windows
run on event times, its expiry on the wall clock.
"""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis

from services.common import config, kafka_io, pii, topics
from services.common.avro import codec
from services.common.clock import china_stamp, now_ms
from services.tools.generator import DeclarationSet, generate
from services.order_match.decide import declaration_id, quota_year
from services.common.quota.store import RedisQuotaStore, quota_key
from services.returns.arrivals import arrival_record
from services.returns.policy import DAY_MS

from .workers import Worker, read_records, with_prefix, worker_env

pytestmark = pytest.mark.integration
WAREHOUSE = "91330100MA2AREA01X"
NOW = now_ms() // 1000 * 1000


def stamp(ms: int) -> str:
    return china_stamp(ms)[:14]


def taxable(s: DeclarationSet) -> Decimal:
    return s.order["goodsValue"] + s.order["freight"] + s.inventory.get("insuredFee", Decimal(0))


def buyer(s: DeclarationSet) -> str:
    return pii.buyer_key(s.order["buyerIdNumber"])


def decl_id(s: DeclarationSet) -> str:
    return declaration_id(s.order["ebpCode"], s.order["orderNo"])


def cleared(s: DeclarationSet, cleared_at: int) -> dict:
    return {"declarationId": decl_id(s), "ebpCode": s.order["ebpCode"], "orderNo": s.order["orderNo"],
            "status": "verified", "taxTotal": s.order["taxTotal"], "valueAddedTax": s.order["taxTotal"],
            "taxableValue": taxable(s), "assureCode": s.inventory["assureCode"], "buyerKey": buyer(s),
            "quotaYear": quota_year(s.inventory), "inventory": s.inventory, "lastDocumentAt": cleared_at,
            "decidedAt": cleared_at}


def report(s: DeclarationSet, released_at: int) -> dict:
    return {"reportId": f"test:{decl_id(s)}:800", "declarationId": decl_id(s), "ebpCode": s.order["ebpCode"],
            "orderNo": s.order["orderNo"], "status": "800", "decidedAt": released_at, "reporter": "customs-test"}


def _ceb_head(message: str, s: DeclarationSet, guid: str, applied_at: int) -> dict:
    inv = s.inventory
    head = {k: inv[k] for k in ("orderNo", "ebpCode", "ebpName", "ebcCode", "ebcName", "logisticsNo", "logisticsCode",
                                "logisticsName", "copNo", "buyerIdType", "buyerIdNumber", "buyerName",
                                "buyerTelephone", "agentCode", "agentName", "customsCode")}
    head.update(message=message, guid=guid, appType="1", appTime=stamp(applied_at), appStatus="2",
                invtNo="", reason="消费者申请")
    return head


def cancel(s: DeclarationSet, guid: str) -> dict:
    return _ceb_head("CEB623", s, guid, NOW - 2 * DAY_MS)


def refund(s: DeclarationSet, guid: str, lines: list[tuple[int, Decimal]], applied_at: int = NOW - DAY_MS) -> dict:
    doc = _ceb_head("CEB625", s, guid, applied_at)
    by_gnum = {line["gnum"]: line for line in s.inventory["lines"]}
    doc["lines"] = [{"gnum": g, "gcode": by_gnum[g]["gcode"], "gname": by_gnum[g]["gname"], "qty": q,
                     "unit": by_gnum[g]["unit"]} for g, q in lines]
    return doc


def delivery(s: DeclarationSet, guid: str) -> dict:
    return {"message": "CEB711", "guid": guid, "appType": "1", "appTime": stamp(NOW), "appStatus": "2",
            "customsCode": s.inventory["customsCode"], "operatorCode": WAREHOUSE, "operatorName": "退货中心仓",
            "ieFlag": "I", "trafMode": "5", "trafNo": "CA1234", "voyageNo": "20250320", "billNo": "999-12345675",
            "logisticsCode": s.inventory["logisticsCode"], "logisticsName": s.inventory["logisticsName"],
            "lines": [{"gnum": 1, "logisticsNo": s.inventory["logisticsNo"]}]}


SCHEMA = {"declarations.cleared": "sandan.Verdict", "customs.reports": "sandan.CustomsReport",
          "documents.cancel": "sandan.ceb.InvtCancel", "documents.refund": "sandan.ceb.InvtRefund",
          "warehouse.arrivals": "sandan.WarehouseArrival", "documents.delivery": "sandan.ceb.Delivery"}


def produce_twice(items: list[tuple[str, dict]]) -> None:
    """Every record twice, the copies apart (as a redelivery after a restart would be)."""
    wire = codec()
    producer = kafka_io.producer()
    for _ in range(2):
        for short, record in items:
            spec = topics.BY_NAME[short]
            producer.send(spec.full_name, key=topics.key_of(record, spec), value=wire.encode(SCHEMA[short], record))
        producer.flush()
    producer.close()


def cli_twice(prefix: str, *args: str) -> None:
    env = dict(os.environ, SANDAN_TOPIC_PREFIX=prefix, SANDAN_LOG_LEVEL="WARNING")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                              cwd=config.PROJECT_ROOT, timeout=60)
        assert done.returncode == 0, done.stderr


def wait_for(describe: str, check, worker, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert worker.alive(), f"the returns worker died; see {worker.log}"
        assert time.monotonic() < deadline, f"timed out waiting for {describe}"
        time.sleep(0.5)


def at_least(count: int, items: list) -> list | None:
    return items if len(items) >= count else None


def answers() -> dict[tuple[str, str], list[str]]:
    """(documentGuid, receipt message) → the statuses answered, in order."""
    out: dict = {}
    for r in read_records("receipts"):
        out.setdefault((r["documentGuid"], r["message"]), []).append(r["returnStatus"])
    return out


def has_answers(wanted: dict[tuple[str, str], list[str]]):
    def check():
        got = answers()
        return all(got.get(key, [])[:len(statuses)] == statuses for key, statuses in wanted.items())
    return check


@pytest.fixture(scope="module")
def returns_worker(stack, topic_prefix, tmp_path_factory):
    prefix = f"{topic_prefix}ret-"
    local = tmp_path_factory.mktemp("returns")
    with with_prefix(prefix):
        kafka_io.create_topics()
        # Retention of 90 days: the story below packs 51 days into seconds, and with the default 30
        # a tick between a declaration's clearance (41 or 51 days back) and its release report
        # would rightly forget it as never released.
        worker = Worker("returns", worker_env(prefix, local, SANDAN_RETURNS_TICK_SECONDS="1",
                                              SANDAN_RETURNS_RETENTION=str(90 * 24 * 3600),
                                              SANDAN_RETURNS_METRICS_PORT="0"), local / "returns.log").start()
        try:
            yield prefix, worker
        finally:
            worker.stop()


def _reserve(redis_url: str, namespace: str, sets: list[DeclarationSet]) -> None:
    async def run():
        client = aioredis.from_url(redis_url)
        store = RedisQuotaStore(client, namespace)
        for s in sets:
            await store.reserve(decl_id(s), buyer(s), quota_year(s.inventory), taxable(s), Decimal("1000000"))
        await client.aclose()
    asyncio.run(run())


def _held(redis_url: str, namespace: str, s: DeclarationSet) -> Decimal:
    client = redis.Redis.from_url(redis_url)
    try:
        return Decimal(int(client.hget(quota_key(namespace, buyer(s), quota_year(s.inventory)), decl_id(s)) or 0)
                       ).scaleb(-5)
    finally:
        client.close()


def test_cancellations_and_returns_give_tax_and_quota_back_exactly_once(stack, returns_worker):
    prefix, worker = returns_worker
    namespace = f"sandan:{prefix}"
    sets = generate(8, buyers=8, fault_share=0, seed=7)
    partial = next(s for s in sets if sum(line["qty"] for line in s.inventory["lines"]) >= 2)
    cancelled, too_late_cancel, full, arrived_first, unfit, late, expired = [s for s in sets if s is not partial][:7]
    everyone = [cancelled, too_late_cancel, full, arrived_first, unfit, late, expired, partial]
    released = {s.order["orderNo"]: NOW - 10 * DAY_MS for s in everyone}
    released[late.order["orderNo"]] = NOW - 40 * DAY_MS
    released[expired.order["orderNo"]] = NOW - 50 * DAY_MS
    whole = {s.order["orderNo"]: [(line["gnum"], line["qty"]) for line in s.inventory["lines"]] for s in everyone}
    first_line = partial.inventory["lines"][0]
    first_part = [(first_line["gnum"], Decimal(1))]

    with with_prefix(prefix):
        _reserve(stack.redis_url, namespace, everyone)
        # 1. the declarations clear: the service links each waybill to its order
        produce_twice([("declarations.cleared", cleared(s, released[s.order["orderNo"]] - DAY_MS)) for s in everyone])
        wait_for("a waybill link per declaration", lambda: {w["orderNo"] for w in read_records("returns.waybills")}
                 >= set(released), worker)
        # 2. one is cancelled before release; customs releases the others (one through the CLI)
        produce_twice([("documents.cancel", cancel(cancelled, "CANCEL-BEFORE"))]
                      + [("customs.reports", report(s, released[s.order["orderNo"]]))
                         for s in everyone if s not in (cancelled, full)])
        cli_twice(prefix, "customs", "report", "--order-no", full.order["orderNo"], "--ebp-code",
                  full.order["ebpCode"], "--status", "800", "--at", stamp(released[full.order["orderNo"]]))
        wait_for("the cancellation and every release", lambda: has_answers({("CANCEL-BEFORE", "CEB624"): ["399"]})()
                 and len({w["orderNo"] for w in read_records("returns.waybills") if w["releasedAt"]}) == 7, worker)
        # 3. requests (one late, one whose goods will never come), a cancellation after release,
        #    and a parcel that comes before its request
        produce_twice([("documents.cancel", cancel(too_late_cancel, "CANCEL-AFTER")),
                       ("documents.refund", refund(full, "R-FULL", whole[full.order["orderNo"]])),
                       ("documents.refund", refund(partial, "R-PART-1", first_part)),
                       ("documents.refund", refund(unfit, "R-UNFIT", whole[unfit.order["orderNo"]])),
                       ("documents.refund", refund(late, "R-LATE", whole[late.order["orderNo"]])),
                       ("documents.refund", refund(expired, "R-EXPIRED", whole[expired.order["orderNo"]],
                                                   applied_at=released[expired.order["orderNo"]] + 5 * DAY_MS)),
                       ("warehouse.arrivals", arrival_record(
                           logistics_no=arrived_first.inventory["logisticsNo"], sorting="fit", arrived_at=NOW - DAY_MS,
                           warehouse_code=WAREHOUSE, arrival_id="ARR-EARLY"))])
        wait_for("the decisions on the requests", has_answers({
            ("CANCEL-AFTER", "CEB624"): ["100"], ("R-FULL", "CEB626"): ["120"], ("R-PART-1", "CEB626"): ["120"],
            ("R-UNFIT", "CEB626"): ["120"], ("R-LATE", "CEB626"): ["100"], ("R-EXPIRED", "CEB626"): ["120", "100"]}),
                 worker)
        wait_for("the early parcel re-keyed to its order",
                 lambda: any(a["arrivalId"] == "ARR-EARLY" for a in read_records("returns.arrivals")), worker)
        # 4. goods arrive (one through the CLI, one with part of the order), the early parcel's request comes
        cli_twice(prefix, "warehouse", "arrive", "--logistics-no", full.inventory["logisticsNo"], "--sorting", "fit",
                  "--at", stamp(NOW), "--warehouse", WAREHOUSE)
        produce_twice([
            ("warehouse.arrivals", arrival_record(logistics_no=partial.inventory["logisticsNo"], sorting="fit",
                                                  arrived_at=NOW, warehouse_code=WAREHOUSE, arrival_id="ARR-PART-1",
                                                  lines=[{"gnum": g, "qty": q} for g, q in first_part])),
            ("warehouse.arrivals", arrival_record(logistics_no=unfit.inventory["logisticsNo"], sorting="unfit",
                                                  arrived_at=NOW, warehouse_code=WAREHOUSE, arrival_id="ARR-UNFIT")),
            ("documents.refund", refund(arrived_first, "R-EARLY", whole[arrived_first.order["orderNo"]]))])
        wait_for("the returns completed or refused", has_answers({
            ("R-FULL", "CEB626"): ["120", "399"], ("R-PART-1", "CEB626"): ["120", "399"],
            ("R-UNFIT", "CEB626"): ["120", "100"], ("R-EARLY", "CEB626"): ["120", "399"]}), worker)
        # 5. the rest of the partial return comes back in a CEB711 entry
        rest = [(g, q - (1 if g == first_line["gnum"] else 0)) for g, q in whole[partial.order["orderNo"]]]
        produce_twice([("documents.refund", refund(partial, "R-PART-2", [(g, q) for g, q in rest if q]))])
        wait_for("the second partial request", has_answers({("R-PART-2", "CEB626"): ["120"]}), worker)
        produce_twice([("documents.delivery", delivery(partial, "DELIVERY-PART-2"))])
        wait_for("the second partial return", has_answers({("R-PART-2", "CEB626"): ["120", "399"]}), worker)
        time.sleep(2)  # a second copy of anything would show up now

        commands = read_records("guarantee.commands")
        receipts = read_records("receipts")
        dead = read_records("deadletter")

    assert dead == []
    assert all(c["action"] == "void" and c["actor"] == "returns" for c in commands)
    by_id = Counter(c["commandId"] for c in commands)
    assert set(by_id) == {"void:CANCEL-BEFORE", "void:return:R-FULL", "void:return:R-EARLY",
                          "void:return:R-PART-1", "void:return:R-PART-2"}
    assert set(by_id.values()) == {1}, f"a void command was sent twice: {by_id}"
    voided: dict[str, Decimal] = Counter()
    for c in commands:
        voided[c["declarationId"]] += c["amount"]
    assert voided == {decl_id(s): s.order["taxTotal"] for s in (cancelled, full, arrived_first, partial)}
    guids = Counter(r["guid"] for r in receipts)
    assert set(guids.values()) == {1}, "a receipt was sent twice"
    for s in (cancelled, full, arrived_first, partial):
        assert _held(stack.redis_url, namespace, s) == 0, f"quota of {decl_id(s)} not given back exactly"
    for s in (too_late_cancel, unfit, late, expired):
        assert _held(stack.redis_url, namespace, s) == taxable(s), f"quota of {decl_id(s)} changed"
    codes = {r["documentGuid"]: {f["code"] for f in r["failures"]} for r in receipts if r["returnStatus"] == "100"}
    assert codes["CANCEL-AFTER"] == {"CANCEL_RELEASED"}
    assert codes["R-LATE"] == {"RETURN_LATE"}
    assert codes["R-EXPIRED"] == {"RETURN_ARRIVAL_LATE"}
    assert codes["R-UNFIT"] == codes["ARR-UNFIT"] == {"RETURN_UNFIT"}


def test_bad_input_is_dead_lettered_and_the_worker_goes_on(stack, returns_worker):
    prefix, worker = returns_worker
    s = generate(1, fault_share=0, seed=99)[0]
    broken = cleared(s, NOW)
    broken["inventory"] = None
    with with_prefix(prefix):
        producer = kafka_io.producer()
        producer.send(topics.name("documents.refund"), key=b"SO-BAD", value=b"not avro")
        producer.send(topics.name("declarations.cleared"), key=s.order["orderNo"].encode(),
                      value=codec().encode("sandan.Verdict", broken))
        producer.flush()
        producer.close()
        keys = (b"SO-BAD", s.order["orderNo"].encode())
        dead = wait_for("two dead letters", lambda: at_least(2, [d for d in read_records("deadletter")
                                                                if d["key"] in keys]), worker)
        produce_twice([("declarations.cleared", cleared(s, NOW))])
        wait_for("the good declaration after the bad ones",
                 lambda: any(w["orderNo"] == s.order["orderNo"] for w in read_records("returns.waybills")), worker)
    assert {(d["code"], d["field"]) for d in dead} == {("UNDECODABLE", None), ("INVALID_FIELD", "inventory")}


def produce(items: list[tuple[str, dict]], *, pause_every: int = 0, pause_s: float = 0.0) -> None:
    wire = codec()
    producer = kafka_io.producer()
    for i, (short, record) in enumerate(items, 1):
        spec = topics.BY_NAME[short]
        producer.send(spec.full_name, key=topics.key_of(record, spec), value=wire.encode(SCHEMA[short], record))
        if pause_every and i % pause_every == 0:
            producer.flush()
            time.sleep(pause_s)
    producer.flush()
    producer.close()


def test_a_worker_killed_mid_stream_loses_and_repeats_no_effect(stack, topic_prefix, tmp_path):
    """kill -9 twice under load (once while declarations clear and are cancelled, once while
    returns complete), each time restarted on the same state folder: every cancellation and
    return ends with its answer, each void command id names its amount once, and the quota
    comes back exactly."""
    prefix = f"{topic_prefix}retkill-"
    namespace = f"sandan:{prefix}"
    sets = generate(240, buyers=240, fault_share=0, seed=31)
    cancelled, returned = sets[::2], sets[1::2]
    released = NOW - 10 * DAY_MS
    env = worker_env(prefix, tmp_path, SANDAN_RETURNS_TICK_SECONDS="1", SANDAN_RETURNS_METRICS_PORT="0",
                     SANDAN_STORE="rocksdb://")
    first = [("declarations.cleared", cleared(s, released - DAY_MS)) for s in sets]
    first += [("documents.cancel", cancel(s, f"C-{s.order['orderNo']}")) for s in cancelled]
    first += [("customs.reports", report(s, released)) for s in returned]
    second = [("documents.refund", refund(s, f"R-{s.order['orderNo']}",
                                          [(line["gnum"], line["qty"]) for line in s.inventory["lines"]]))
              for s in returned]
    second += [("warehouse.arrivals", arrival_record(logistics_no=s.inventory["logisticsNo"], sorting="fit",
                                                     arrived_at=NOW, warehouse_code=WAREHOUSE,
                                                     arrival_id=f"A-{s.order['orderNo']}")) for s in returned]
    random.Random(5).shuffle(first)  # topics are read in no order relative to each other anyway
    random.Random(6).shuffle(second)
    want_cancel = {(f"C-{s.order['orderNo']}", "CEB624") for s in cancelled}
    want_return = {(f"R-{s.order['orderNo']}", "CEB626") for s in returned}

    def final(wanted: set, status: str):
        return lambda: all(status in answers().get(key, ()) for key in wanted)

    workers = []

    def start(n: int):
        workers.append(Worker("returns", env, tmp_path / f"returns{n}.log").start())
        return workers[-1]

    with with_prefix(prefix):
        kafka_io.create_topics()
        _reserve(stack.redis_url, namespace, sets)
        try:
            worker = start(1)
            produce(first[: len(first) // 3])
            wait_for("the first answers", lambda: at_least(5, read_records("receipts")), worker, 60)
            produce(first[len(first) // 3:], pause_every=100, pause_s=0.1)
            worker.kill()
            worker = start(2)
            wait_for("every cancellation and release", lambda: final(want_cancel, "399")() and len(
                {w["orderNo"] for w in read_records("returns.waybills") if w["releasedAt"]}) == len(returned),
                     worker, 120)
            produce(second[: len(second) // 3])
            wait_for("the first return answers", lambda: any(key[1] == "CEB626" for key in answers()), worker, 60)
            produce(second[len(second) // 3:], pause_every=60, pause_s=0.1)
            worker.kill()
            worker = start(3)
            wait_for("every return completed", final(want_return, "399"), worker, 120)
            time.sleep(2)  # a late copy of anything would show up now
            commands, receipts, dead = (read_records("guarantee.commands"), read_records("receipts"),
                                        read_records("deadletter"))
            statuses = answers()
        finally:
            for w in workers:
                w.stop()

    assert dead == []
    by_id: dict[str, set] = {}
    for c in commands:
        by_id.setdefault(c["commandId"], set()).add((c["declarationId"], c["amount"]))
    assert set(by_id) == ({f"void:C-{s.order['orderNo']}" for s in cancelled}
                          | {f"void:return:R-{s.order['orderNo']}" for s in returned})
    assert all(len(v) == 1 for v in by_id.values()), "a command id was sent with two meanings"
    voided: dict[str, Decimal] = Counter()
    for (decl, amount), in by_id.values():
        voided[decl] += amount
    assert voided == {decl_id(s): s.order["taxTotal"] for s in sets}
    assert all(statuses[key] and set(statuses[key]) == {"399"} for key in want_cancel)
    assert all(set(statuses[key]) == {"120", "399"} for key in want_return)
    by_guid: dict[str, list] = {}
    for r in receipts:
        by_guid.setdefault(r["guid"], []).append({k: v for k, v in r.items() if k != "returnTime"})
    assert all(all(copy == copies[0] for copy in copies) for copies in by_guid.values()), \
        "a receipt guid was sent with two decisions"
    for s in sets:
        assert _held(stack.redis_url, namespace, s) == 0, f"quota of {decl_id(s)} not given back exactly once"
