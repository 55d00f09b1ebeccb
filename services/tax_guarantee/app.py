"""tax_guarantee as a stream worker (``partition_worker``): the wiring around ``GuaranteeProcessor``.

Flow: declarations.matched (verified declarations with their tax) → deduct once from the
assureCode's guarantee → declarations.cleared + the tax bill (a CEB816 receipt), or
declarations.refused + a receipt + the buyer's quota released; guarantee.commands
(register, amend, extend, freeze, unfreeze, close, void, settle) → the account changed (a
void in full or a settlement: the bill's CEB818 receipt); every change → guarantee.ledger, threshold
crossings → guarantee.warnings; refused or unreadable input → deadletter. A timer on the
worker that owns partition 0 warns of guarantees that expire soon and refreshes the
per-account gauges.

No table: a guarantee is shared by every partition (declarations.matched is keyed by
orderNo, so one account's deductions arrive on all partitions and on every worker at once),
so its state lives in Redis, where each change is committed atomically and at most once per
declaration or command id (``store``, ``redis_store``). Only that atomicity matters for
deductions, not their order: deductions that fit leave the same balance in any order, and
when the balance runs short the declaration that comes last is refused, as at customs.
Account commands keep their order: guarantee.commands is keyed by assureCode (one partition
per account) and a worker handles its records one batch at a time.

Verified declarations are taken in batches (what one fetch brings, up to SANDAN_STREAM_BATCH): read together,
decided one after the other in memory, committed together (``GuaranteeProcessor.on_verdicts``),
two round trips to Redis per batch instead of two per declaration.

Delivery is at-least-once: the worker flushes the producer before committing offsets; a
redelivered declaration or command finds its recorded outcome and re-emits the same ledger
entry, warnings, verdict and receipt (same ids), which readers de-duplicate.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable


from services.common import config, redis_client, streaming, topics
from services.common.avro import WireError, codec
from services.common.clock import now_ms
from services.common.deadletter import dead_letter
from services.common.outputs import Output
from services.common.partition_worker import PartitionWorker
from services.common.quota.store import RedisQuotaStore
from services.common.rates import RateFileError, load_rates
from services.tax_guarantee import metrics
from services.tax_guarantee.alerts import parse_thresholds
from services.tax_guarantee.commands import ACTIONS
from services.tax_guarantee.processor import GuaranteeProcessor, Handled
from services.tax_guarantee.redis_store import RedisAccountStore, namespace
from services.tax_guarantee.store import Applied

log = logging.getLogger("sandan.tax_guarantee")


def create_processor(redis) -> GuaranteeProcessor:
    try:
        thresholds = parse_thresholds(config.get("SANDAN_GUARANTEE_THRESHOLDS"))
    except ValueError as exc:
        raise SystemExit(f"setting SANDAN_GUARANTEE_THRESHOLDS: {exc}") from None
    try:
        rates = load_rates()  # the match's rate table: each tax bill's lines are split by it
    except RateFileError as exc:
        raise SystemExit(f"setting SANDAN_TAX_RATES: {exc}") from None
    return GuaranteeProcessor(store=RedisAccountStore(redis, namespace()), quota=RedisQuotaStore(redis, namespace()),
                              thresholds=thresholds, rates=rates,
                              expiry_warn_days=config.get_int("SANDAN_GUARANTEE_EXPIRY_WARN_DAYS"))


def create_worker() -> tuple[PartitionWorker, Callable[[list], Awaitable[None]]]:
    """The worker and its batch handler (``sandan worker tax-guarantee`` runs them)."""
    matched, commands = topics.name("declarations.matched"), topics.name("guarantee.commands")
    worker = PartitionWorker("tax-guarantee", [matched, commands])
    wire = codec()
    redis = redis_client.connect()
    processor = create_processor(redis)
    # each step's Redis writes on the replicas before its outputs go out (SANDAN_REDIS_WAIT_REPLICAS)
    replicated = redis_client.replica_wait(redis).after
    m = metrics.guarantee()
    publish = streaming.Publisher(worker.send, wire, count=lambda o: metrics.count_output(m, o)).publish

    async def reject(msg, code: str, field: str | None, reason: str, reference: str | None = None,
                     count: bool = True) -> None:
        await publish([dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, field, reason,
                                   reference)], count=count)

    def decoded(msg, schema: str) -> dict | Output:
        """The record, or the dead letter of a record that is not a ``schema``."""
        try:
            name, record = wire.decode(msg.value)
            if name != schema:
                raise WireError(f"expected {schema}, got {name}")
        except WireError as exc:
            return dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, "UNDECODABLE", None, str(exc))
        return record

    async def emit(msg, record: dict, handled: Handled, reference: str | None) -> None:
        if handled.rejected_input is not None:
            r = handled.rejected_input
            await reject(msg, r.code, r.field, r.message, reference, count=not handled.replayed)
        # a cleared declaration is the verdict as order_match wrote it: its bytes go on as they came;
        # the ledger entry, warnings and bills as the outcome's store encoded them
        encoded = {id(record): msg.value}
        if isinstance(handled.outcome, Applied):
            encoded.update(handled.outcome.wire)
        await publish(handled.outputs, count=not handled.replayed, encoded=encoded)

    async def handle(msg, schema: str, step, reference_field: str) -> tuple[dict, Handled] | None:
        record = decoded(msg, schema)
        if isinstance(record, Output):
            await publish([record])
            return None
        reference = record.get(reference_field)
        try:
            handled = await streaming.with_retry(replicated(lambda: step(record, now_ms())), log)
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
            log.exception("%s %s on %s/%d@%d failed", schema, reference, msg.topic, msg.partition, msg.offset)
            await reject(msg, "PROCESSING_ERROR", None, f"{type(exc).__name__}: {exc}", reference)
            return None
        await emit(msg, record, handled, reference)
        return record, handled

    async def deduct_batch(messages) -> None:
        """A batch of verified declarations decided together (two round trips to Redis); a batch
        that fails is taken again one declaration at a time, so a bad one is dead-lettered alone."""
        taken = [(msg, decoded(msg, "sandan.Verdict")) for msg in messages]
        await publish([record for _, record in taken if isinstance(record, Output)])
        taken = [(msg, record) for msg, record in taken if not isinstance(record, Output)]
        try:
            handled = await streaming.with_retry(
                replicated(lambda: processor.on_verdicts([r for _, r in taken], now_ms())), log)
        except Exception:  # noqa: BLE001 - find the declaration at fault: take them one by one
            log.exception("a batch of %d declarations failed; taking them one at a time", len(taken))
            for msg, _ in taken:
                await handle(msg, "sandan.Verdict", processor.on_verdict, "declarationId")
            return
        for (msg, record), one in zip(taken, handled):
            await emit(msg, record, one, record.get("declarationId"))

    async def command(msg) -> None:
        done = await handle(msg, "sandan.GuaranteeCommand", processor.on_command, "commandId")
        if done is not None and not done[1].replayed:
            record, handled = done
            refused = handled.rejected_input
            action = record.get("action") if record.get("action") in ACTIONS else "unknown"
            m.commands.labels(action=action, outcome=refused.code if refused else "applied").inc()

    async def on_batch(records: list) -> None:
        declarations = [r for r in records if r.topic == matched]
        if declarations:
            await deduct_batch(declarations)
        for record in records:
            if record.topic == commands:  # one at a time, in their order: an account's commands build on each other
                await command(record)

    async def check() -> None:
        if 0 not in worker.partitions:  # one worker of the group checks: the one that owns partition 0
            return
        await publish(await streaming.with_retry(replicated(lambda: processor.expiry_warnings(now_ms())), log))
        for account in await streaming.with_retry(processor.store.accounts, log):
            metrics.show_account(m, account)

    worker.timer(config.get_int("SANDAN_GUARANTEE_CHECK_SECONDS"), check)
    return worker, on_batch
