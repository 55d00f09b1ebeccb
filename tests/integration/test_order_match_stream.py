"""order_match on the real Kafka and Redis: one verdict per declaration, whatever the order,
duplicates or crashes (issue: order_match)."""
from __future__ import annotations

import copy
import random
import time
from collections import defaultdict
from decimal import Decimal

import pytest
import redis

from services.common import kafka_io, pii
from services.tools.generator import generate
from services.order_match.decide import china_year, declaration_id, quota_year
from services.common.quota.store import quota_key

from .workers import Worker, produce_documents, read_records, wait_for_verdicts, with_prefix, worker_env

pytestmark = pytest.mark.integration


# (document, field, the code that names it): a document naming another waybill or platform than
# its partners, decided with them at the deadline
MISNAMED = (("CEB621", "logisticsNo", "INVENTORY_PARTIES"), ("CEB411", "ebpCode", "PAYMENT_REFERENCE"),
            ("CEB621", "ebpCode", "INVENTORY_PARTIES"))


def _expectations(sets, incomplete: int, misnamed: int = 0):
    """Expected verdict per declaration id; the last ``incomplete`` sets lose their payment; in
    the first ``misnamed`` fault-free sets one document names another waybill number or
    platform than its partners (``MISNAMED`` in turn)."""
    expected, docs = {}, []
    clean = [i for i, s in enumerate(sets[:len(sets) - incomplete]) if s.fault is None][:misnamed]
    for i, s in enumerate(sets):
        decl = declaration_id(s.order["ebpCode"], s.order["orderNo"])
        if i >= len(sets) - incomplete:
            expected[decl] = ("incomplete", frozenset({"INCOMPLETE"}))
            docs += [copy.deepcopy(d) for d in s.documents if d["message"] != "CEB411"]
        elif i in clean:
            message, field, code = MISNAMED[clean.index(i) % len(MISNAMED)]
            expected[decl] = ("rejected", frozenset({code}))
            docs += [dict(copy.deepcopy(d), **{field: f"{d[field]}X"}) if d["message"] == message
                     else copy.deepcopy(d) for d in s.documents]
        else:
            expected[decl] = (s.expected_status, s.expected_codes)
            docs += [copy.deepcopy(d) for d in s.documents]
    return expected, docs


def _quota_totals(redis_url: str, namespace: str, sets, verdicts) -> tuple[dict, dict]:
    """(what Redis holds, what the verified verdicts add up to) per buyer quota key. The quota
    year is the one the inventory arrived in (the generator's appTimes are in 2025)."""
    client = redis.Redis.from_url(redis_url)
    wanted: dict[str, Decimal] = defaultdict(Decimal)
    verified = {v["declarationId"]: v for v in verdicts if v["status"] == "verified"}
    for s in sets:
        verdict = verified.get(declaration_id(s.order["ebpCode"], s.order["orderNo"]))
        if verdict is not None:
            assert verdict["quotaYear"] == china_year(verdict["decidedAt"]) != quota_year(s.inventory)
            key = quota_key(namespace, pii.buyer_key(s.order["buyerIdNumber"]), verdict["quotaYear"])
            wanted[key] += s.order["goodsValue"] + s.order["freight"] + s.inventory.get("insuredFee", Decimal(0))
    held = {key: Decimal(int(client.hget(key, "total") or 0)).scaleb(-5) for key in wanted}
    client.close()
    return held, dict(wanted)


def _check(expected: dict, verdicts: list[dict]) -> dict:
    by_id: dict[str, set] = defaultdict(set)
    for v in verdicts:
        by_id[v["declarationId"]].add((v["status"], frozenset(f["code"] for f in v["failures"])))
    assert set(by_id) == set(expected), "declarations without a verdict, or verdicts nobody asked for"
    for decl, outcomes in by_id.items():
        assert outcomes == {expected[decl]}, decl
    return by_id


def test_any_order_and_duplicates_give_exactly_one_verdict(stack, topic_prefix, tmp_path):
    prefix = f"{topic_prefix}om1-"
    sets = generate(60, buyers=20, fault_share="0.15", seed=101)
    expected, docs = _expectations(sets, incomplete=5, misnamed=3)
    rnd = random.Random(4)
    docs += [copy.deepcopy(rnd.choice(docs)) for _ in range(len(docs) // 3)]  # redelivered documents
    rnd.shuffle(docs)
    with with_prefix(prefix):
        kafka_io.create_topics()
        worker = Worker("order-match", worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="15"),
                        tmp_path / "worker.log").start()
        try:
            produce_documents(docs)
            verdicts = wait_for_verdicts(set(expected), timeout_s=150, workers=[worker])
            time.sleep(3)  # anything extra would show up now
            verdicts = read_records("declarations.verdicts")
        finally:
            worker.stop()
        _check(expected, verdicts)
        assert len(verdicts) == len(expected), "a declaration got two verdicts without any crash"
        matched = read_records("declarations.matched")
        assert {m["declarationId"] for m in matched} == {d for d, e in expected.items() if e[0] == "verified"}
        assert all(m["inventory"] is not None and m["taxTotal"] > 0 for m in matched)
        receipts = read_records("receipts")
        answered = {r["documentGuid"] for r in receipts}
        assert {d["guid"] for d in docs} <= answered, "a document got no receipt"
        held, wanted = _quota_totals(stack.redis_url, f"sandan:{prefix}", sets, verdicts)
        assert held == wanted


def test_a_worker_killed_mid_stream_loses_and_double_counts_nothing(stack, topic_prefix, tmp_path):
    prefix = f"{topic_prefix}om2-"
    sets = generate(200, buyers=200, fault_share="0.1", seed=202)  # ~1 set per buyer: no annual-limit races
    expected, docs = _expectations(sets, incomplete=0)
    random.Random(8).shuffle(docs)
    env = worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="3600", SANDAN_STORE="rocksdb://")
    with with_prefix(prefix):
        kafka_io.create_topics()
        worker = Worker("order-match", env, tmp_path / "worker.log").start()
        restarted = None
        try:
            produce_documents(docs[: len(docs) // 2])
            # a half of shuffled documents completes only ~1/16 of the declarations: wait for a few
            deadline = time.monotonic() + 60
            while len(read_records("declarations.verdicts")) < 5 and time.monotonic() < deadline:
                time.sleep(0.5)
            produce_documents(docs[len(docs) // 2:], pause_every=200, pause_s=0.2)
            worker.kill()
            restarted = Worker("order-match", env, tmp_path / "worker2.log").start()
            verdicts = wait_for_verdicts(set(expected), timeout_s=180, workers=[restarted])
        finally:
            worker.stop()
            if restarted:
                restarted.stop()
        by_id = _check(expected, verdicts)
        assert len(by_id) == len(sets)
        held, wanted = _quota_totals(stack.redis_url, f"sandan:{prefix}", sets, verdicts)
        assert held == wanted, "a quota was reserved twice (or lost) across the crash"


def test_records_that_are_not_documents_are_dead_lettered_and_the_worker_goes_on(stack, topic_prefix, tmp_path):
    from services.common.avro import codec
    from services.common.topics import name

    prefix = f"{topic_prefix}om3-"
    [good] = generate(1, fault_share=0, seed=303)
    wire = codec()
    with with_prefix(prefix):
        kafka_io.create_topics()
        worker = Worker("order-match", worker_env(prefix, tmp_path), tmp_path / "worker.log").start()
        try:
            producer = kafka_io.producer()
            # a well-formed record of another kind, with an orderNo: a verdict where an order belongs
            verdict = {"declarationId": "E:O-hostile", "ebpCode": "E", "orderNo": "O-hostile", "status": "verified",
                       "lastDocumentAt": 1, "decidedAt": 2}
            producer.send(name("documents.order"), key=b"O-hostile", value=wire.encode("sandan.Verdict", verdict))
            producer.send(name("documents.payment"), key=b"O-hostile", value=b"\xa5\x03abc not avro")
            producer.flush()
            producer.close()
            produce_documents([copy.deepcopy(d) for d in good.documents])
            expected = {declaration_id(good.order["ebpCode"], good.order["orderNo"])}
            verdicts = wait_for_verdicts(expected, timeout_s=90, workers=[worker])
            assert worker.alive()
        finally:
            worker.stop()
        assert {v["declarationId"] for v in verdicts} == expected
        dead = read_records("deadletter")
        assert sorted(d["source"].rsplit(".", 1)[-1] for d in dead) == ["order", "payment"]
        assert all(d["code"] == "UNDECODABLE" for d in dead)
        assert "crashed" not in (tmp_path / "worker.log").read_text(errors="replace").lower()


def _committed_covers(group: str, short_topic: str) -> bool:
    """The group has committed everything on the topic (all of it was processed)."""
    from kafka.structs import TopicPartition

    from services.common.topics import name

    client = kafka_io.admin()
    try:
        committed = client.list_group_offsets(group).get(group, {})
    finally:
        client.close()
    ends = kafka_io.end_offsets(name(short_topic))
    return all(committed.get(TopicPartition(name(short_topic), p)) is not None
               and committed[TopicPartition(name(short_topic), p)].offset >= end for p, end in ends.items() if end)


def test_a_worker_down_past_the_timeout_still_verifies_declarations_whose_documents_arrived_in_time(
        stack, topic_prefix, tmp_path):
    """DOMAIN §2: INCOMPLETE only when the documents did not *arrive* within MATCH_TIMEOUT. The
    orders are read before the worker stops; payments, waybills and inventories arrive in time,
    behind a backlog, while it is down; it comes back after the deadline. Expiring by the wall
    clock, the first ticks after the restart beat the backlog and make declarations INCOMPLETE."""
    prefix = f"{topic_prefix}om4-"
    timeout_s = 20
    sets = generate(40, buyers=40, fault_share=0, seed=404)
    backlog = generate(600, buyers=600, fault_share=0, seed=405)
    expected, _ = _expectations(sets + backlog, incomplete=0)
    env = worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT=str(timeout_s), SANDAN_STORE="rocksdb://")
    with with_prefix(prefix):
        kafka_io.create_topics()
        worker = Worker("order-match", env, tmp_path / "worker.log").start()
        restarted = None
        try:
            started = time.monotonic()
            produce_documents([copy.deepcopy(s.order) for s in sets])
            deadline = time.monotonic() + 15
            while not _committed_covers(f"{prefix}sandan-order-match", "documents.order"):
                assert time.monotonic() < deadline, "the worker did not take the orders"
                time.sleep(0.3)
            worker.stop()
            produce_documents([copy.deepcopy(d) for s in backlog for d in s.documents])
            produce_documents([copy.deepcopy(d) for s in sets for d in s.documents if d["message"] != "CEB311"])
            assert time.monotonic() - started < timeout_s - 2, "too slow to make the point: documents arrived late"
            time.sleep(max(0.0, started + timeout_s + 3 - time.monotonic()))  # down past every deadline
            restarted = Worker("order-match", env, tmp_path / "worker2.log").start()
            verdicts = wait_for_verdicts(set(expected), timeout_s=180, workers=[restarted])
        finally:
            worker.stop()
            if restarted:
                restarted.stop()
        by_id = _check(expected, verdicts)
        assert len(by_id) == len(expected)
