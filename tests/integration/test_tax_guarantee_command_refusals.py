"""A refused guarantee command keeps its first answer after Redis is wiped and repaired (ledger
simulation, seed 827972018): the repair restores refused commands' outcomes from their dead letters.

The story, on the real Redis (db 15, like tests/sim): a bill voided in full, the cancellation's void
of it refused BILL_FULLY_VOIDED, the account closed, Redis lost and repaired from what was
published, the cancellation's void delivered again. Decided anew it would be ACCOUNT_CLOSED.
"""
from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from services.common.avro import codec
from services.common.deadletter import dead_letter
from services.tax_guarantee import ledger, reconcile
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.redis_store import RedisAccountStore
from services.tax_guarantee.store import Refused
from tests.unit.tax_guarantee.samples import CODE, NOW_MS, command_record, verdict

pytestmark = pytest.mark.integration
COMMANDS = "guarantee.commands"
WIRE = codec()


def published(handled, record: dict) -> tuple[list[dict], list[dict]]:
    """(ledger entries, dead letters) of one handled input, as the worker publishes them (app.py)."""
    entries = [o.record for o in handled.outputs if o.topic == "guarantee.ledger"]
    dead = []
    if handled.rejected_input is not None:
        r = handled.rejected_input
        out = dead_letter(COMMANDS, 0, 7, CODE.encode(), WIRE.encode("sandan.GuaranteeCommand", record),
                          r.code, r.field, r.message, record["commandId"])
        dead.append(WIRE.decode(WIRE.encode(out.schema, out.record))[1])
    return entries, dead


async def story(client, ns: str) -> tuple[str, str]:
    store = RedisAccountStore(client, ns)
    processor = GuaranteeProcessor(store=store, quota=None, thresholds=(Decimal(80),), expiry_warn_days=30)
    cancel = command_record("void", commandId="cancel:EBP:O1", declarationId="EBP:O1", amount="10.00")
    entries, dead = [], []
    for kind, record in [
            ("command", command_record("register", commandId="r1", kind="bank_guarantee", amount="1000",
                                       validFrom="20250101", validTo="20251231")),
            ("verdict", verdict("1", tax="10.00")),
            ("command", command_record("void", commandId="return:1", declarationId="EBP:O1", amount="10.00")),
            ("command", cancel),                                  # nothing left of the bill
            ("command", command_record("close", commandId="c1"))]:
        handled = await (processor.on_command if kind == "command" else processor.on_verdict)(record, NOW_MS)
        e, d = published(handled, record)
        entries += e
        dead += d
    first = (await processor.on_command(cancel, NOW_MS)).outcome
    assert isinstance(first, Refused) and first.refusal.code == "BILL_FULLY_VOIDED"

    # Redis lost everything; the repair writes what the ledger and the dead letters say
    await store.wipe()
    for code, rebuilt in ledger.replay(entries).items():
        found = reconcile.compare(rebuilt, None, {}, set())
        await store.restore(rebuilt, found.stray_bills, found.missing_entries)
    refusals = ledger.command_refusals(dead, COMMANDS, WIRE.decode)
    assert [(r.assure_code, r.key) for r in refusals] == [(CODE, "command/cancel:EBP:O1")]
    await store.restore_refusals(await store.missing_refusals(refusals))
    assert await store.missing_refusals(refusals) == []

    again = await processor.on_command(cancel, NOW_MS + 1)
    assert again.replayed
    return first.refusal.code, again.rejected_input.code


def test_a_refused_command_redelivered_after_a_wipe_and_repair_gets_its_first_answer(stack):
    async def run():
        client = aioredis.from_url(urlunsplit(urlsplit(stack.redis_url)._replace(path="/15")))
        ns = f"sandan:cmd-refusals-{secrets.token_hex(3)}-"
        try:
            return await story(client, ns)
        finally:
            await RedisAccountStore(client, ns).wipe()
            await client.aclose()

    first, again = asyncio.run(run())
    assert again == first == "BILL_FULLY_VOIDED"  # not ACCOUNT_CLOSED: the account closed after the refusal
