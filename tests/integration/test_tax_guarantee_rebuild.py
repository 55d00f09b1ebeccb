"""The guarantee ledger on the real Kafka rebuilds a wiped Redis to the same balances
(issue: tax_guarantee, `sandan guarantee rebuild`)."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from services.cli import main
from services.common import kafka_io, topics
from services.common.avro import codec
from services.common.deadletter import dead_letter
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.redis_store import RedisAccountStore, namespace
from tests.unit.tax_guarantee.samples import NOW_MS, command_record, verdict

from .workers import with_prefix

pytestmark = pytest.mark.integration
BIG, SMALL = "91330106MA2H3D7P5N", "91440300MA5G2UJ81R"


def history() -> list[tuple[str, dict]]:
    """Two accounts' life: registrations, deductions (some refused), a void, a settlement, a freeze."""
    steps = [("command", command_record("register", commandId="r1", assureCode=BIG, kind="bank_guarantee",
                                        amount=Decimal(5000), validFrom="20250101", validTo="20251231")),
             ("command", command_record("register", commandId="r2", assureCode=SMALL, kind="cash_deposit",
                                        amount=Decimal("100.5"), validFrom="20250101", validTo="20251231"))]
    steps += [("verdict", verdict(str(i), tax=f"{10 + i}.37", code=BIG if i % 3 else SMALL)) for i in range(24)]
    steps += [("command", command_record("void", commandId="v1", assureCode=BIG, declarationId="EBP:O1",
                                         amount=Decimal("4.12"))),
              ("command", command_record("settle", commandId="s1", assureCode=BIG, entDutyNo="N2025-1",
                                         bills=["EBP:O2", "EBP:O4"])),
              ("command", command_record("amend", commandId="a1", assureCode=BIG, amount=Decimal(6000))),
              ("command", command_record("freeze", commandId="f1", assureCode=SMALL))]
    return steps


async def play(store: RedisAccountStore, steps) -> list:
    processor = GuaranteeProcessor(store=store, quota=None, thresholds=(Decimal(80), Decimal(95)),
                                   expiry_warn_days=30)
    handled = []
    for kind, record in steps:
        step = processor.on_command if kind == "command" else processor.on_verdict
        handled.append(await step(record, NOW_MS))
    return handled


def publish_ledger(handled_list, repeat_every: int = 4) -> None:
    """Send the ledger outputs, some twice (a redelivery after a crash) and not in order."""
    wire, producer = codec(), kafka_io.producer()
    entries = [o for h in handled_list for o in h.outputs if o.topic == "guarantee.ledger"]
    entries = entries[::-1] + entries[::repeat_every]
    # refusals too (the samples' inventory is no full CEB621, and the rebuild does not read it)
    entries += [replace(o, record=dict(o.record, inventory=None)) for h in handled_list for o in h.outputs
                if o.topic == "declarations.refused"]
    for o in entries:
        producer.send(topics.name(o.topic), key=o.key, value=wire.encode(o.schema, o.record))
    producer.flush()
    producer.close()


async def snapshot(store: RedisAccountStore) -> dict:
    return {a.assure_code: (a, await store.bills_of(a.assure_code)) for a in await store.accounts()}


def using_store(redis_url: str, step):
    """Run ``step(store)`` on a fresh Redis client and event loop."""
    async def go():
        client = aioredis.from_url(redis_url)
        try:
            return await step(RedisAccountStore(client, namespace()))
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_a_wiped_redis_is_rebuilt_from_the_ledger_to_the_same_balances(stack, topic_prefix, capsys):
    prefix = f"{topic_prefix}gr-"
    with with_prefix(prefix):
        kafka_io.create_topics([topics.BY_NAME["guarantee.ledger"], topics.BY_NAME["declarations.refused"]])
        handled = using_store(stack.redis_url, lambda s: play(s, history()))
        before = using_store(stack.redis_url, snapshot)
        assert before[BIG][0].outstanding > 0 and before[SMALL][0].state == "frozen"
        assert any(h.outputs[0].topic == "declarations.refused" for h in handled)  # SMALL ran short
        publish_ledger(handled)

        assert main(["guarantee", "rebuild", "--timeout", "20"]) == 0
        assert "Redis equals the ledger" in capsys.readouterr().out

        assert using_store(stack.redis_url, lambda s: s.wipe()) > 0
        assert main(["guarantee", "rebuild", "--timeout", "20"]) == 1
        assert "run with --repair" in capsys.readouterr().out
        assert main(["guarantee", "rebuild", "--repair", "--timeout", "20"]) == 1
        assert using_store(stack.redis_url, snapshot) == before
        assert main(["guarantee", "rebuild", "--timeout", "20"]) == 0

        # The idempotency records came back too: a redelivered deduction is not taken twice and
        # re-emits the very entry the ledger holds.
        deduction = 3  # history()[3]: verdict 1, deducted from BIG
        [redelivered] = using_store(stack.redis_url, lambda s: play(s, [history()[deduction]]))
        assert redelivered.replayed and redelivered.outputs[0].topic == "guarantee.ledger"
        assert redelivered.outputs[0].record == handled[deduction].outputs[0].record
        assert using_store(stack.redis_url, snapshot) == before

        # ... and so did the refusals: a refused deduction delivered again keeps its first answer
        # (decided anew, it could be cleared after customs was told it was refused).
        refused = next(i for i, h in enumerate(handled) if h.outputs and h.outputs[0].topic == "declarations.refused")
        using_store(stack.redis_url, lambda s: play(s, [history()[1], ("command", command_record(
            "amend", commandId="a2", assureCode=SMALL, amount=Decimal(100_000)))]))  # room for it now
        [again] = using_store(stack.redis_url, lambda s: play(s, [history()[refused]]))
        assert again.replayed and again.outputs[0].record == handled[refused].outputs[0].record


async def fork(store: RedisAccountStore) -> list:
    """issue 20's fork: register, deduct 10.00 (seq 2), Redis rolled back to before it (a replica
    that never got it promoted), deduct 20.00 on it (seq 2 again)."""
    client = store._redis
    keys = [k async for k in client.scan_iter(match=f"{namespace()}*")]
    handled = await play(store, [("command", command_record(
        "register", commandId="r1", assureCode=BIG, kind="bank_guarantee", amount=Decimal(5000),
        validFrom="20250101", validTo="20351231"))])
    saved = {k: await client.dump(k) for k in [k async for k in client.scan_iter(match=f"{namespace()}*")]
             if k not in keys}
    handled += await play(store, [("verdict", verdict("1", tax="10.00", code=BIG))])
    for k in [k async for k in client.scan_iter(match=f"{namespace()}*")]:
        await client.delete(k)
    for k, v in saved.items():
        await client.restore(k, 0, v)
    handled += await play(store, [("verdict", verdict("2", tax="20.00", code=BIG))])
    return handled


def test_a_seq_forked_by_a_lost_write_is_repaired_to_what_the_entries_add_up_to(stack, topic_prefix, capsys):
    with with_prefix(f"{topic_prefix}gf-"):
        kafka_io.create_topics([topics.BY_NAME["guarantee.ledger"], topics.BY_NAME["declarations.refused"]])
        handled = using_store(stack.redis_url, fork)
        entries = [o.record for h in handled for o in h.outputs if o.topic == "guarantee.ledger"]
        assert [(e["seq"], e["outstanding"]) for e in entries] == [(1, 0), (2, Decimal(10)), (2, Decimal(20))]
        publish_ledger(handled, repeat_every=len(handled) + 1)

        assert main(["guarantee", "rebuild", "--timeout", "20"]) == 1
        out = capsys.readouterr().out
        assert out.count("seq 2 is used by 2 entries") == 1 and "a Redis write lost in a failover" in out
        assert "entries missing" not in out and "bills add up" not in out
        assert main(["guarantee", "rebuild", "--repair", "--actor", "ops", "--timeout", "20"]) == 1
        assert f"appended {BIG}/correct/2 (seq 3): outstanding 30.00 (10.00 more" in capsys.readouterr().out
        account, bills = using_store(stack.redis_url, snapshot)[BIG]
        assert (account.outstanding, account.seq, sorted(bills)) == (Decimal(30), 3, ["EBP:O1", "EBP:O2"])

        assert main(["guarantee", "rebuild", "--timeout", "20"]) == 0  # the correction resolved the fork
        out = capsys.readouterr().out
        assert "Redis equals the ledger" in out and f"corrected by {BIG}/correct/2" in out
        # the account's next change takes a seq nobody holds, on the true balance
        [after] = using_store(stack.redis_url, lambda s: play(s, [("verdict", verdict("3", tax="5.00", code=BIG))]))
        assert (after.outputs[0].record["seq"], after.outputs[0].record["outstanding"]) == (4, Decimal(35))


def test_a_refused_command_keeps_its_first_answer_after_a_wipe_and_rebuild_repair(stack, topic_prefix, capsys):
    """The refusal comes back from its dead letter (ledger simulation, seed 827972018): a void of a
    bill voided in full, redelivered after the account closed, is still BILL_FULLY_VOIDED."""
    cancel = command_record("void", commandId="cancel:EBP:O1", assureCode=BIG, declarationId="EBP:O1",
                            amount=Decimal("10.00"))
    steps = [("command", command_record("register", commandId="r1", assureCode=BIG, kind="bank_guarantee",
                                        amount=Decimal(5000), validFrom="20250101", validTo="20251231")),
             ("verdict", verdict("1", tax="10.00", code=BIG)),
             ("command", command_record("void", commandId="v1", assureCode=BIG, declarationId="EBP:O1",
                                        amount=Decimal("10.00"))),
             ("command", cancel),
             ("command", command_record("close", commandId="c1", assureCode=BIG))]
    with with_prefix(f"{topic_prefix}gc-"):
        kafka_io.create_topics([topics.BY_NAME[t] for t in ("guarantee.ledger", "declarations.refused", "deadletter")])
        handled = using_store(stack.redis_url, lambda s: play(s, steps))
        assert handled[3].rejected_input.code == "BILL_FULLY_VOIDED" and handled[4].outputs
        publish_ledger(handled)
        # the worker dead-letters the refused command with the record it consumed (app.py's reject)
        wire, producer = codec(), kafka_io.producer()
        dead = dead_letter(topics.name("guarantee.commands"), 0, 3, BIG.encode(),
                           wire.encode("sandan.GuaranteeCommand", cancel), "BILL_FULLY_VOIDED", "declarationId",
                           handled[3].rejected_input.message, "cancel:EBP:O1")
        producer.send(topics.name("deadletter"), key=dead.key, value=wire.encode(dead.schema, dead.record))
        producer.flush()
        producer.close()

        assert using_store(stack.redis_url, lambda s: s.wipe()) > 0
        assert main(["guarantee", "rebuild", "--repair", "--timeout", "20"]) == 1
        assert "1 refused commands" in capsys.readouterr().out
        assert main(["guarantee", "rebuild", "--timeout", "20"]) == 0
        [again] = using_store(stack.redis_url, lambda s: play(s, [("command", cancel)]))
        assert again.replayed and again.rejected_input == handled[3].rejected_input  # not ACCOUNT_CLOSED
