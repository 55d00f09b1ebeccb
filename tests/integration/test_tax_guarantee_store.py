"""Guarantee balances in the real Redis under concurrency (issue: tax_guarantee).

Many deductions race for one account, from many asyncio tasks and from two processes at
once, each declaration delivered twice: the balance never goes below zero, no declaration is
deducted twice, and the outstanding tax is exactly the sum of what was cleared.
"""
from __future__ import annotations

import asyncio
import random
import secrets
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from multiprocessing import get_context

import pytest
import redis.asyncio as aioredis

from services.common.money import ZERO
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.redis_store import RedisAccountStore
from services.tax_guarantee.store import Applied
from tests.unit.tax_guarantee.samples import CODE, NOW_MS, command_record, verdict

pytestmark = pytest.mark.integration
REGISTER = dict(kind="bank_guarantee", validFrom="20250101", validTo="20251231")


@pytest.fixture
def namespace(stack, topic_prefix) -> str:
    return f"sandan:{topic_prefix}gs{secrets.token_hex(3)}-"


def engine(redis_url: str, namespace: str) -> tuple[GuaranteeProcessor, object]:
    # Hundreds of tasks at once: they queue for a bounded set of connections.
    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=32))
    return GuaranteeProcessor(store=RedisAccountStore(client, namespace), quota=None, thresholds=(Decimal(80),),
                              expiry_warn_days=30), client


def taxes(n: int, seed: int) -> dict[str, Decimal]:
    rnd = random.Random(seed)
    return {f"D{i}": Decimal(rnd.randint(1, 50_000)).scaleb(-2) for i in range(n)}  # 0.01 .. 500.00 CNY


async def deduct_all(redis_url: str, namespace: str, bills: dict[str, Decimal], copies: int) -> dict[str, str]:
    """Deliver every declaration ``copies`` times, all at once; the outcome kind per declaration."""
    processor, client = engine(redis_url, namespace)
    deliveries = [(decl, tax) for decl, tax in bills.items() for _ in range(copies)]
    random.Random(len(deliveries)).shuffle(deliveries)
    try:
        handled = await asyncio.gather(*(processor.on_verdict(verdict(decl, tax=str(tax)), NOW_MS)
                                         for decl, tax in deliveries))
    finally:
        await client.aclose()
    outcomes: dict[str, set] = {}
    for (decl, _), h in zip(deliveries, handled):
        outcomes.setdefault(decl, set()).add(h.outputs[-1].topic)
    assert all(len(kinds) == 1 for kinds in outcomes.values()), "one declaration got two different answers"
    return {decl: kinds.pop() for decl, kinds in outcomes.items()}


def deduct_in_process(args) -> dict[str, str]:
    return asyncio.run(deduct_all(*args))


async def register(redis_url: str, namespace: str, amount: str) -> None:
    processor, client = engine(redis_url, namespace)
    handled = await processor.on_command(command_record("register", amount=Decimal(amount), **REGISTER), NOW_MS)
    await client.aclose()
    assert isinstance(handled.outcome, Applied)


async def state(redis_url: str, namespace: str):
    client = aioredis.from_url(redis_url)
    store = RedisAccountStore(client, namespace)
    try:
        return await store.account(CODE), await store.bills_of(CODE)
    finally:
        await client.aclose()


def check(account, bills, outcomes, amounts) -> None:
    cleared = {d for d, topic in outcomes.items() if topic == "declarations.cleared"}
    assert account.available >= ZERO
    assert account.outstanding == sum((amounts[d] for d in cleared), ZERO)
    assert set(bills) == {f"EBP:O{d}" for d in cleared}  # samples.verdict names declarations EBP:O<n>
    assert all(bills[f"EBP:O{d}"].deducted == amounts[d] for d in cleared)
    refused = set(outcomes) - cleared
    assert refused, "the account was meant to run short"
    # Refused only for want of balance: each refused declaration did not fit when it was decided,
    # so in particular none is smaller than what is left now.
    assert all(amounts[d] > account.available for d in refused)


def test_concurrent_deductions_from_many_tasks_are_exact_and_once(stack, namespace):
    amounts = taxes(300, seed=1)
    guaranteed = sum(amounts.values()) / 2
    asyncio.run(register(stack.redis_url, namespace, str(guaranteed.quantize(Decimal("0.01")))))
    outcomes = asyncio.run(deduct_all(stack.redis_url, namespace, amounts, copies=2))
    account, bills = asyncio.run(state(stack.redis_url, namespace))
    check(account, bills, outcomes, amounts)
    assert account.seq == 1 + len(bills)  # one change per cleared declaration, none for a redelivery


def test_two_processes_deducting_the_same_declarations_deduct_each_once(stack, namespace):
    amounts = taxes(200, seed=2)
    asyncio.run(register(stack.redis_url, namespace, str((sum(amounts.values()) * 2 / 3).quantize(Decimal("0.01")))))
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        # Both processes deliver every declaration: each is a redelivery race across processes.
        results = list(pool.map(deduct_in_process, [(stack.redis_url, namespace, amounts, 1)] * 2))
    assert results[0] == results[1], "the two processes saw different outcomes for one declaration"
    account, bills = asyncio.run(state(stack.redis_url, namespace))
    check(account, bills, results[0], amounts)


def test_amendments_racing_deductions_never_leave_more_outstanding_than_guaranteed(stack, namespace):
    amounts = taxes(150, seed=3)
    asyncio.run(register(stack.redis_url, namespace, str(sum(amounts.values()))))

    async def race():
        processor, client = engine(stack.redis_url, namespace)
        amend = [processor.on_command(command_record("amend", commandId=f"a{i}", amount=Decimal(10_000 - i * 500)),
                                      NOW_MS) for i in range(20)]
        deduct = [processor.on_verdict(verdict(d, tax=str(t)), NOW_MS) for d, t in amounts.items()]
        calls = amend + deduct
        random.Random(9).shuffle(calls)
        try:
            return await asyncio.gather(*calls)
        finally:
            await client.aclose()

    asyncio.run(race())
    account, bills = asyncio.run(state(stack.redis_url, namespace))
    assert account.outstanding <= account.guaranteed
    assert account.outstanding == sum((b.deducted for b in bills.values()), ZERO)


async def deduct_in_batches(redis_url: str, namespace: str, bills: dict[str, Decimal], size: int,
                            seed: int) -> dict[str, str]:
    """Every declaration once, in batches of ``size`` (``on_verdicts``, as the worker takes them)."""
    processor, client = engine(redis_url, namespace)
    deliveries = list(bills.items())
    random.Random(seed).shuffle(deliveries)
    outcomes: dict[str, str] = {}
    try:
        for start in range(0, len(deliveries), size):
            part = deliveries[start:start + size]
            handled = await processor.on_verdicts([verdict(decl, tax=str(tax)) for decl, tax in part], NOW_MS)
            outcomes.update({decl: h.outputs[-1].topic for (decl, _), h in zip(part, handled)})
    finally:
        await client.aclose()
    return outcomes


def deduct_batches_in_process(args) -> dict[str, str]:
    return asyncio.run(deduct_in_batches(*args))


def test_two_processes_deducting_the_same_declarations_in_batches_deduct_each_once(stack, namespace):
    amounts = taxes(300, seed=4)
    asyncio.run(register(stack.redis_url, namespace, str((sum(amounts.values()) * 2 / 3).quantize(Decimal("0.01")))))
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        # Both deliver every declaration, in other orders: batches race batches on one account.
        results = list(pool.map(deduct_batches_in_process, [(stack.redis_url, namespace, amounts, 25, seed)
                                                             for seed in (1, 2)]))
    assert results[0] == results[1], "the two processes saw different outcomes for one declaration"
    account, bills = asyncio.run(state(stack.redis_url, namespace))
    check(account, bills, results[0], amounts)
    assert account.seq == 1 + len(bills)


def test_a_refund_of_a_settled_bill_is_kept_in_redis_and_given_once(stack, namespace):
    """A return completed after its bill was paid: Redis keeps the refund on the bill, the
    balance stays where the payment put it, and the same void delivered again refunds nothing more."""
    async def scenario():
        await register(stack.redis_url, namespace, "1000")
        processor, client = engine(stack.redis_url, namespace)
        try:
            await processor.on_verdict(verdict("1", tax="40"), NOW_MS)
            await processor.on_command(command_record("settle", commandId="s1", entDutyNo="N1", bills=["EBP:O1"]), NOW_MS)
            void = command_record("void", commandId="v1", declarationId="EBP:O1", amount=Decimal("15"))
            first = await processor.on_command(void, NOW_MS)
            again = await processor.on_command(void, NOW_MS)
        finally:
            await client.aclose()
        return first, again, await state(stack.redis_url, namespace)

    first, again, (account, bills) = asyncio.run(scenario())
    assert [o.record["action"] for o in first.outputs if o.topic == "guarantee.ledger"] == ["refund"]
    assert again.outputs == first.outputs  # the recorded outcome, not a second refund
    assert account.outstanding == ZERO and account.available == Decimal(1000)
    assert (bills["EBP:O1"].settled_by, bills["EBP:O1"].refunded) == ("N1", Decimal(15))
