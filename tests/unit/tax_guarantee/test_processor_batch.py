"""A batch of declarations (``on_verdicts``, what the worker does with a batch from Kafka)
answers exactly as the same declarations one after the other (``on_verdict``)."""
from __future__ import annotations

import asyncio
from decimal import Decimal

from services.common.quota.store import MemoryQuotaStore
from services.common import codes
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.store import MemoryAccountStore

from .samples import CODE, NOW_MS, command_record, verdict

REGISTER = dict(kind="bank_guarantee", amount="100", validFrom="20250101", validTo="20251231")
OTHER = "91440300MA5G2UJ81R"


def run(coro):
    return asyncio.run(coro)


def engine(store=None) -> GuaranteeProcessor:
    processor = GuaranteeProcessor(store=store or MemoryAccountStore(), quota=MemoryQuotaStore(),
                                   thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30)
    run(processor.on_command(command_record("register", **REGISTER), NOW_MS))
    run(processor.on_command(command_record("register", commandId="cmd-other", assureCode=OTHER, **REGISTER), NOW_MS))
    return processor


def batch() -> list[dict]:
    """Two accounts interleaved; one runs short and a smaller one still fits after it; the
    thresholds are crossed; a declaration twice; an unknown account; a verdict that is no
    verified declaration; one decided before the batch (a redelivery)."""
    return [verdict("1", tax="40"), verdict("2", tax="30", code=OTHER), verdict("3", tax="41"),
            verdict("4", tax="25"), verdict("3", tax="41"), verdict("5", tax="15"), verdict("6", tax="9", code="NOBODY"),
            verdict("7", tax="1", status="rejected"), verdict("8", tax="60", code=OTHER), verdict("0", tax="4"),
            verdict("9", tax="20", code=OTHER)]


def answers(handled) -> list[tuple]:
    return [(h.outputs, h.rejected_input, h.replayed) for h in handled]


def state(processor) -> tuple:
    store = processor.store
    return run(store.accounts()), store._bills, {k: v for k, v in store._outcomes.items()}


def test_a_batch_answers_and_ends_as_one_declaration_after_the_other():
    one, many = engine(), engine()
    for processor in (one, many):  # decided before: the batch meets it as a redelivery
        run(processor.on_verdict(verdict("0", tax="4"), NOW_MS))
    sequential = [run(one.on_verdict(v, NOW_MS)) for v in batch()]
    batched = run(many.on_verdicts(batch(), NOW_MS))
    assert answers(batched) == answers(sequential)
    assert state(many) == state(one)
    # and the batch did meet every case
    refusals = [h.outputs[0].record["failures"][0]["code"] for h in sequential if h.outputs
                and h.outputs[0].topic == "declarations.refused"]
    assert codes.GUARANTEE_INSUFFICIENT in refusals and codes.GUARANTEE_UNKNOWN in refusals
    assert any(o.topic == "guarantee.warnings" for h in sequential for o in h.outputs)
    assert sum(h.replayed for h in sequential) == 2 and sum(h.rejected_input is not None for h in sequential) == 1


class RivalBeforeCommit(MemoryAccountStore):
    """Another worker deducts from the account between the batch's read and its commit, once."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: GuaranteeProcessor | None = None

    async def commit_chains(self, chains):
        if self.rival is not None:
            rival, self.rival = self.rival, None
            await rival.on_verdict(verdict("RIVAL", tax="50"), NOW_MS)
        return await super().commit_chains(chains)


def test_a_batch_that_lost_the_race_is_decided_again_on_the_new_balance():
    store = RivalBeforeCommit()
    processor = engine(store)
    store.rival = processor
    handled = run(processor.on_verdicts([verdict("1", tax="30"), verdict("2", tax="30")], NOW_MS))
    # 50 went to the rival first: 30 still fits, the second 30 no longer does
    assert [h.outputs[-1].topic for h in handled] == ["declarations.cleared", "receipts"]
    assert handled[1].outputs[0].record["failures"][0]["code"] == codes.GUARANTEE_INSUFFICIENT
    account = run(store.account(CODE))
    assert account.outstanding == 80 and account.seq == 3
