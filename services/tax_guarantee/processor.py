"""tax_guarantee's engine: a verified declaration or a command in, the records to publish out.

``on_verdict`` deducts a declaration's tax once (cleared, or refused with a receipt and the
buyer's quota released); ``on_command`` applies an account command, a void or a settlement;
``expiry_warnings`` finds accounts whose validity ends soon. Each decision is made by the
pure ``rules`` on a snapshot and committed by the store only if the account did not move in
between (else it is decided again), together with its outcome, so a redelivered input is
answered from the recorded outcome with exactly the records it produced the first time.
``on_verdicts`` decides a batch of declarations as one after the other would be, with one
round trip to read them all and one to commit them all (``store``: chains).

A deduction also issues the declaration's tax bill (CEB816, ``tax_bill``); a void that leaves
nothing of a bill and a settlement send its status change (CEB818: 3 void, 2 aggregated). The
bills are part of the recorded outcome, so a redelivery re-sends the very same receipts.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from services.common.outputs import Output
from services.common.money import ZERO
from services.common.quota.store import QuotaStore
from services.common.rates import RateTable, load_rates
from services.common.receipts import REJECTED, receipt, verdict_info
from services.common.verdict import VERIFIED, Failure
from services.common import codes
from services.tax_guarantee import alerts, ledger, rules, tax_bill
from services.tax_guarantee.account import Account, china_date
from services.tax_guarantee.commands import Command, Refusal, parse_command
from services.tax_guarantee.store import AccountStore, Applied, Chain, Outcome, Refused, Snapshot

TAX_KINDS = ("customsTax", "consumptionTax", "valueAddedTax")
MAX_ATTEMPTS = 1000  # commits lost to concurrent changes of the same account before giving up


@dataclass(frozen=True)
class Handled:
    outputs: list[Output]
    rejected_input: Refusal | None = None  # input the service does not act on: the adapter dead-letters it
    replayed: bool = False                 # answered from the outcome recorded for an earlier delivery
    outcome: Outcome | None = None


@dataclass
class _Chaining:
    """A chain being built: one account's decisions in a batch (see ``store.Chain``)."""
    base: Snapshot
    account: Account | None
    decisions: list = field(default_factory=list)  # (key, outcome, change)
    members: list = field(default_factory=list)    # (batch index, key, answered from an earlier decision)


class GuaranteeProcessor:
    def __init__(self, *, store: AccountStore, quota: QuotaStore | None, thresholds: tuple[Decimal, ...],
                 expiry_warn_days: int, rates: RateTable | None = None) -> None:
        self.store = store
        self.quota = quota
        self.thresholds = thresholds
        self.expiry_warn_days = expiry_warn_days
        self.rates = rates if rates is not None else load_rates()  # to split a bill's tax over its lines

    async def on_verdict(self, verdict: dict, now_ms: int) -> Handled:
        problem = _verdict_problem(verdict)
        if problem is not None:
            return Handled([], rejected_input=problem)
        code = _assure_code(verdict)
        decl, tax = verdict["declarationId"], verdict["taxTotal"]
        today = china_date(now_ms)
        outcome, replayed = await self._decide_once(
            code, ledger.deduction_key(decl), (),
            lambda snap: self._outcome(rules.deduct(snap.account, decl, tax, today, code), snap, now_ms,
                                       bills=self._bill_of(verdict)))
        return await self._handled(verdict, outcome, replayed)

    async def on_verdicts(self, verdicts: Sequence[dict], now_ms: int) -> list[Handled]:
        """``on_verdict`` of each, with the outcomes of taking them one after the other."""
        problems = {i: p for i, v in enumerate(verdicts) if (p := _verdict_problem(v)) is not None}
        decided: dict[int, tuple[Outcome, bool]] = {}
        pending = [i for i in range(len(verdicts)) if i not in problems]
        today = china_date(now_ms)
        for _ in range(MAX_ATTEMPTS):
            if not pending:
                break
            snaps = await self.store.snapshots([(_assure_code(verdicts[i]),
                                                 ledger.deduction_key(verdicts[i]["declarationId"])) for i in pending])
            chains: dict[str, _Chaining] = {}
            for i, snap in zip(pending, snaps):
                if snap.outcome is not None:
                    decided[i] = (snap.outcome, True)
                    continue
                chain = chains.setdefault(snap.assure_code, _Chaining(snap, snap.account))
                if any(key == snap.key for key, _, _ in chain.decisions):  # delivered twice in one batch
                    chain.members.append((i, snap.key, True))
                    continue
                v = verdicts[i]
                outcome, change = self._outcome(
                    rules.deduct(chain.account, v["declarationId"], v["taxTotal"], today, snap.assure_code),
                    Snapshot(snap.assure_code, snap.key, chain.account), now_ms, bills=self._bill_of(v))
                chain.decisions.append((snap.key, outcome, change))
                chain.members.append((i, snap.key, False))
                if change is not None:
                    chain.account = change.account
            committed = await self.store.commit_chains([Chain(c.base, tuple(c.decisions)) for c in chains.values()])
            pending = []
            for chain, applied in zip(chains.values(), committed):
                if not applied:  # lost to a concurrent change: decided again from a fresh read
                    pending += [i for i, _, _ in chain.members]
                    continue
                outcomes = {key: outcome for key, outcome, _ in chain.decisions}
                for i, key, replayed in chain.members:
                    decided[i] = (outcomes[key], replayed)
            pending.sort()
        if pending:
            raise RuntimeError(f"{MAX_ATTEMPTS} attempts lost to concurrent changes of the same accounts")
        return [Handled([], rejected_input=problems[i]) if i in problems else await self._handled(v, *decided[i])
                for i, v in enumerate(verdicts)]

    async def _handled(self, verdict: dict, outcome: Outcome, replayed: bool) -> Handled:
        if isinstance(outcome, Refused):
            await self._release_quota(verdict)
            return Handled(_refusal_outputs(verdict, outcome), replayed=replayed, outcome=outcome)
        cleared = Output("declarations.cleared", verdict["orderNo"].encode(), "sandan.Verdict", verdict)
        return Handled(_applied_outputs(outcome) + [cleared], replayed=replayed, outcome=outcome)

    async def on_command(self, record: dict, now_ms: int) -> Handled:
        command = parse_command(record)
        if isinstance(command, Refusal):
            return Handled([], rejected_input=command)
        issued = await self._issued_bills(command)
        outcome, replayed = await self._decide_once(
            command.assure_code, ledger.command_key(command.command_id), command.bill_ids,
            lambda snap: self._outcome(rules.apply(command, snap.account, snap.bills), snap, now_ms, command,
                                       bills=lambda entry, change: _status_changes(change, entry, issued)))
        if isinstance(outcome, Refused):
            return Handled([], rejected_input=outcome.refusal, replayed=replayed, outcome=outcome)
        return Handled(_applied_outputs(outcome), replayed=replayed, outcome=outcome)

    async def expiry_warnings(self, now_ms: int) -> list[Output]:
        """One warning per account and day while its validity ends within the configured days.

        The day is claimed before the warning is published: a crash in between loses that
        day's warning rather than repeating it on every tick.
        """
        today = china_date(now_ms)
        outputs = []
        for account in await self.store.accounts():
            warning = alerts.expiry_warning(account, today, self.expiry_warn_days, now_ms)
            if warning is not None and await self.store.claim_daily(account.assure_code, today):
                outputs.append(_warning_output(warning))
        return outputs

    async def _decide_once(self, code: str, key: str, bill_ids: tuple[str, ...],
                           decide: Callable[[Snapshot], tuple[Outcome, rules.Change | None]]) -> tuple[Outcome, bool]:
        for _ in range(MAX_ATTEMPTS):
            snap = await self.store.snapshot(code, key, bill_ids)
            if snap.outcome is not None:
                return snap.outcome, True
            outcome, change = decide(snap)
            if await self.store.commit(snap, outcome, change):
                return outcome, False
        raise RuntimeError(f"account {code}: {MAX_ATTEMPTS} attempts lost to concurrent changes")

    def _outcome(self, result: rules.Change | Refusal, snap: Snapshot, now_ms: int,
                 command: Command | None = None, bills: BillsOf | None = None) -> tuple[Outcome, rules.Change | None]:
        if isinstance(result, Refusal):
            return Refused(result, now_ms), None
        entry = ledger.entry(result, key=snap.key, at=now_ms, command=command)
        warnings = alerts.utilisation_warnings(self.thresholds, snap.account, result.account, entry["entryId"], now_ms)
        return Applied(entry, tuple(warnings), tuple(bills(entry, result)) if bills else ()), result

    def _bill_of(self, verdict: dict) -> BillsOf:
        def bill(entry: dict, change: rules.Change) -> list[dict]:
            issued = tax_bill.tax_bill(verdict, entry["at"], self.rates)
            return [issued] if issued is not None else []
        return bill

    async def _issued_bills(self, command: Command) -> dict[str, dict]:
        """The CEB816 bills of the declarations a void or settlement touches, by declarationId
        (a bill issued before bills were recorded, or never issued, is absent)."""
        found = {}
        for decl in command.bill_ids:
            outcome = await self.store.outcome(command.assure_code, ledger.deduction_key(decl))
            if isinstance(outcome, Applied):
                found.update({decl: r for r in outcome.receipts if r["message"] == tax_bill.TAX_BILL})
        return found

    async def _release_quota(self, verdict: dict) -> None:
        if self.quota is not None and verdict.get("buyerKey") and verdict.get("quotaYear") is not None:
            await self.quota.release(verdict["declarationId"], verdict["buyerKey"], verdict["quotaYear"])


BillsOf = Callable[[dict, rules.Change], list[dict]]  # (ledger entry, change) → receipts to record with it


def _status_changes(change: rules.Change, entry: dict, issued: dict[str, dict]) -> list[dict]:
    """CEB818s: status 3 for a bill voided in full (a partial void or a refund changes no
    status the standard has), status 2 for each bill a payment notice settles."""
    if change.action == "void":
        status = tax_bill.VOID
        bills = [b for b in change.bills if b.remaining <= ZERO]
    elif change.action == "settle":
        status, bills = tax_bill.AGGREGATED, list(change.bills)
    else:
        return []
    return [tax_bill.status_change(issued[b.declaration_id], status, entry) for b in bills
            if b.declaration_id in issued]


def _assure_code(verdict: dict) -> str:
    return (verdict.get("assureCode") or "").strip()


def _verdict_problem(verdict: dict) -> Refusal | None:
    if verdict.get("status") != VERIFIED:
        return Refusal(codes.INVALID_FIELD, "status", f"only verified declarations are deducted, got"
                                                      f" {verdict.get('status')!r}")
    if not (verdict.get("declarationId") or "").strip():
        return Refusal(codes.INVALID_FIELD, "declarationId", "the verdict has no declarationId")
    if verdict["taxTotal"] < ZERO:
        return Refusal(codes.INVALID_AMOUNT, "taxTotal", f"negative tax {verdict['taxTotal']}")
    # the tax bill (CEB816) splits each kind over the lines: a negative kind, or kinds that do not
    # add up to the total, would issue a bill that contradicts the deduction
    for kind in TAX_KINDS:
        if verdict[kind] < ZERO:
            return Refusal(codes.INVALID_AMOUNT, kind, f"negative tax {verdict[kind]}")
    if sum(verdict[kind] for kind in TAX_KINDS) != verdict["taxTotal"]:
        return Refusal(codes.INVALID_AMOUNT, "taxTotal", f"taxTotal {verdict['taxTotal']} is not the sum of "
                       + ", ".join(f"{kind} {verdict[kind]}" for kind in TAX_KINDS))
    # the bill's lines are shares of P in proportion to the lines' prices: a negative price or P
    # would give lines of opposite signs, each as large as it likes (past the wire format's range)
    if verdict.get("taxableValue") is not None and verdict["taxableValue"] < ZERO:
        return Refusal(codes.INVALID_AMOUNT, "taxableValue", f"negative taxable value {verdict['taxableValue']}")
    for line in (verdict.get("inventory") or {}).get("lines") or ():
        if line.get("totalPrice") is not None and line["totalPrice"] < ZERO:
            return Refusal(codes.INVALID_AMOUNT, f"inventory.lines[gnum {line.get('gnum')}].totalPrice",
                           f"negative line price {line['totalPrice']}")
    return None


def _warning_output(warning: dict) -> Output:
    return Output("guarantee.warnings", warning["assureCode"].encode(), "sandan.GuaranteeWarning", warning)


def _applied_outputs(outcome: Applied) -> list[Output]:
    entry = Output("guarantee.ledger", outcome.entry["assureCode"].encode(), "sandan.LedgerEntry", outcome.entry)
    return [entry] + [_warning_output(w) for w in outcome.warnings] + \
        [Output("receipts", r["receiver"].encode(), "sandan.Receipt", r) for r in outcome.receipts]


def _refusal_outputs(verdict: dict, outcome: Refused) -> list[Output]:
    """The verdict turned into a rejection, and a CEB622-style receipt to the inventory's agent."""
    r = outcome.refusal
    failure = Failure(r.code, r.field, r.message)
    refused = dict(verdict, status="rejected", failures=[failure.to_json_dict()], decidedAt=outcome.at)
    outputs = [Output("declarations.refused", verdict["orderNo"].encode(), "sandan.Verdict", refused)]
    inventory = verdict.get("inventory")
    if inventory is not None:
        rec = receipt(inventory, REJECTED, verdict_info("rejected", [failure], ()), [failure], outcome.at)
        # the numbers order_match gave the verified inventory: the XSD requires preNo on a CEB622
        rec.update(preNo=inventory.get("preNo"), invtNo=inventory.get("invtNo"))
        # The same refusal always gets the same receipt id, so a redelivery can be recognised.
        name = f"sandan:guarantee-refusal:{verdict['declarationId']}"
        rec["guid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, name)).upper()
        outputs.append(Output("receipts", rec["receiver"].encode(), "sandan.Receipt", rec))
    return outputs
