"""Generated declarations through the real stack: order-match worker → tax-guarantee worker →
declarations.cleared, with guarantees registered by the command line; one guarantee too small,
one frozen and one missing, so some declarations are refused with a receipt and their buyer's
quota released (issue: tax_guarantee)."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
import redis

from services.cli import build_parser, main
from services.cli.guarantee import command_record
from services.common import kafka_io, topics
from services.common.avro import codec
from services.common.clock import now_ms
from services.tools.generator import generate
from services.common.money import ZERO
from services.order_match.decide import declaration_id
from services.common.quota.store import quota_key
from services.common import codes
from services.tax_guarantee.account import china_date, day_text

from .workers import Worker, produce_documents, read_records, with_prefix, worker_env

pytestmark = pytest.mark.integration
VOIDED = Decimal("1.11")


def register(code: str, amount: Decimal, valid_days: int) -> None:
    today = china_date(now_ms())
    assert main(["guarantee", "register", "-a", code, "--kind", "bank_guarantee", "--amount", str(amount),
                 "--valid-from", day_text(today - timedelta(days=365)),
                 "--valid-to", day_text(today + timedelta(days=valid_days)), "--wait", "60"]) == 0


def credit_one_account(code: str, bills: list[str]) -> tuple[str, str]:
    """Settle one bill, void part of another and settle the rest of it through the command line,
    void the first one (a refund); then try what is refused."""
    settled, voided = bills[0], bills[1]
    assert main(["guarantee", "settle", "-a", code, "--ent-duty-no", "N2025-0001", "--bills", settled,
                 "--wait", "30"]) == 0
    assert main(["guarantee", "void", "-a", code, "--declaration", voided, "--amount", str(VOIDED),
                 "--wait", "30"]) == 0
    # a partial return before payment: the rest of the bill is aggregated and paid all the same
    assert main(["guarantee", "settle", "-a", code, "--ent-duty-no", "N2025-0002", "--bills", voided,
                 "--wait", "30"]) == 0
    # A void of the settled bill (a return completed after payment) is a refund: applied, and the
    # balance stays where the payment put it (checked with the balances below).
    assert main(["guarantee", "void", "-a", code, "--declaration", settled, "--amount", "1", "--wait", "30"]) == 0
    # A second settlement of a bill sent straight to Kafka is refused by the service.
    record = command_record(args_for("settle", code, "--ent-duty-no", "N2025-0003", "--bills", voided,
                                     "--command-id", "settle-voided"))
    producer = kafka_io.producer()
    producer.send(topics.name("guarantee.commands"), key=code.encode(),
                  value=codec().encode("sandan.GuaranteeCommand", record))
    producer.flush()
    producer.close()
    deadline = time.monotonic() + 30
    while not any(d["documentGuid"] == "settle-voided" for d in read_records("deadletter")):
        assert time.monotonic() < deadline, "the refused settlement never reached the dead-letter topic"
        time.sleep(0.5)
    return settled, voided


def args_for(action: str, code: str, *more: str):
    return build_parser().parse_args(["guarantee", action, "-a", code, *more])


def wait_for_decisions(expected: set[str], workers, timeout_s: float) -> tuple[list[dict], list[dict]]:
    deadline = time.monotonic() + timeout_s
    while True:
        cleared, refused = read_records("declarations.cleared"), read_records("declarations.refused")
        decided = {v["declarationId"] for v in cleared + refused}
        if expected <= decided or time.monotonic() > deadline:
            return cleared, refused
        for w in workers:
            assert w.alive(), f"worker {w.name} died; see {w.log}"
        time.sleep(1.0)


def test_declarations_are_cleared_or_refused_by_their_guarantee(stack, topic_prefix, tmp_path, capsys):
    prefix = f"{topic_prefix}tg1-"
    sets = generate(40, buyers=40, fault_share="0", seed=303)
    taxes: dict[str, dict[str, Decimal]] = defaultdict(dict)  # assureCode → declarationId → tax
    for s in sets:
        taxes[s.inventory["assureCode"]][declaration_id(s.order["ebpCode"], s.order["orderNo"])] = s.order["taxTotal"]
    small, frozen, unknown, *ample = sorted(taxes, key=lambda c: (-len(taxes[c]), c))
    # Half of what the small account's declarations need: some fit (the smallest always does),
    # not all of them.
    small_amount = (sum(taxes[small].values()) / 2).quantize(Decimal("0.01"))
    env = worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="3600", SANDAN_STORE="memory://",
                     SANDAN_TAX_GUARANTEE_METRICS_PORT="0", SANDAN_GUARANTEE_CHECK_SECONDS="1")
    with with_prefix(prefix):
        kafka_io.create_topics()
        workers = [Worker("tax-guarantee", env, tmp_path / "guarantee.log").start(),
                   Worker("order-match", env, tmp_path / "match.log").start()]
        try:
            register(small, small_amount, valid_days=365)
            register(frozen, Decimal(1_000_000), valid_days=365)
            assert main(["guarantee", "freeze", "-a", frozen, "--wait", "30"]) == 0
            for code in ample:
                register(code, Decimal(1_000_000), valid_days=10 if code == ample[0] else 365)
            produce_documents([d for s in sets for d in s.documents])
            expected = {d for per_code in taxes.values() for d in per_code}
            cleared, refused = wait_for_decisions(expected, workers, timeout_s=45)
            settled_bill, voided_bill = credit_one_account(ample[1], sorted(taxes[ample[1]]))
            capsys.readouterr()
            assert main(["guarantee", "list", "--json"]) == 0
            listed = capsys.readouterr().out
        finally:
            for w in workers:
                w.stop()
        matched = {v["declarationId"]: v for v in read_records("declarations.matched")}
        receipts = read_records("receipts")
        ledger = read_records("guarantee.ledger")
        warnings = read_records("guarantee.warnings")
        dead = read_records("deadletter")

    cleared_ids = [v["declarationId"] for v in cleared]
    refused_by = {v["declarationId"]: [f["code"] for f in v["failures"]] for v in refused}
    assert set(matched) == expected
    assert len(cleared_ids) == len(set(cleared_ids)) and len(refused_by) == len(refused), "decided twice"
    assert set(cleared_ids) | set(refused_by) == expected and not set(cleared_ids) & set(refused_by)

    # Who is refused, and why.
    assert {d: refused_by[d] for d in taxes[unknown]} == {d: [codes.GUARANTEE_UNKNOWN] for d in taxes[unknown]}
    assert {d: refused_by[d] for d in taxes[frozen]} == {d: [codes.GUARANTEE_INACTIVE] for d in taxes[frozen]}
    short = [d for d in taxes[small] if d in refused_by]
    assert short and all(refused_by[d] == [codes.GUARANTEE_INSUFFICIENT] for d in short)
    assert not any(d in refused_by for code in ample for d in taxes[code])

    # Balances: exactly the cleared taxes are outstanding, less what was settled or voided.
    accounts = {row["assureCode"]: row for row in map(json.loads, listed.splitlines())}
    credited = {settled_bill: matched[settled_bill]["taxTotal"], voided_bill: matched[voided_bill]["taxTotal"]}
    for code in [small, frozen, *ample]:
        owed = sum((matched[d]["taxTotal"] - credited.get(d, ZERO) for d in taxes[code] if d not in refused_by),
                   ZERO)
        assert Decimal(accounts[code]["outstanding"]) == owed, code
    assert Decimal(accounts[small]["outstanding"]) <= small_amount
    assert unknown not in accounts and accounts[frozen]["state"] == "frozen"
    # The second settlement, sent past the command line, was refused by the service.
    [refusal] = [d for d in dead if d["documentGuid"] == "settle-voided"]
    assert (refusal["code"], refusal["field"]) == (codes.BILL_SETTLED, "bills")

    # Every refusal answered the inventory's agent with a rejection receipt, and gave the quota back.
    rejections = {r["documentGuid"]: r for r in receipts
                  if r["returnStatus"] == "100" and r["failures"] and r["failures"][0]["code"].startswith("GUARANTEE")}
    client = redis.Redis.from_url(stack.redis_url)
    try:
        for decl in expected:
            v = matched[decl]
            held = client.hexists(quota_key(f"sandan:{prefix}", v["buyerKey"], v["quotaYear"]), decl)
            assert held == (decl not in refused_by), decl
            if decl in refused_by:
                receipt = rejections[v["inventory"]["guid"]]
                assert (receipt["message"], receipt["receiver"]) == ("CEB622", v["inventory"]["agentCode"])
    finally:
        client.close()

    # The ledger: one entry per registration, the freeze, each cleared declaration, the two
    # settlements, the void and the refund.
    ids = [e["entryId"] for e in ledger]
    assert len(ids) == len(set(ids)) == len(taxes) - 1 + 1 + len(cleared_ids) + 4
    [refund] = [e for e in ledger if e["action"] == "refund"]
    assert (refund["declarationId"], refund["amount"]) == (settled_bill, Decimal(1))
    assert any(w["kind"] == "expiry" and w["assureCode"] == ample[0] for w in warnings)

    # The tax bills: one CEB816 per cleared declaration to its assureCode, lines adding up to the
    # head; a CEB818 status 2 for the settled bill; none for the partial void or the refund.
    bills = {r["orderNo"]: r for r in receipts if r["message"] == "CEB816"}
    assert len(bills) == len(cleared_ids) == len([r for r in receipts if r["message"] == "CEB816"])
    for decl in cleared_ids:
        v, bill = matched[decl], bills[matched[decl]["orderNo"]]
        assert (bill["receiver"], bill["taxStatus"]) == (v["assureCode"], "1")
        assert bill["taxNo"] == v["inventory"]["invtNo"] + "01" and len(v["inventory"]["invtNo"]) == 18
        assert sum(line["valueAddedTax"] + line["consumptionTax"] for line in bill["taxLines"]) == v["taxTotal"]
    changes = [(r["orderNo"], r["taxStatus"], r["entDutyNo"]) for r in receipts if r["message"] == "CEB818"]
    assert changes == [(matched[settled_bill]["orderNo"], "2", "N2025-0001"),
                       (matched[voided_bill]["orderNo"], "2", "N2025-0002")]  # partly voided, then paid
    assert all(r["preNo"] for r in rejections.values())  # the XSD requires it on a CEB622
