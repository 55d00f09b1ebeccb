"""A seeded simulation of the guarantee ledger and the annual quota (issue 20) on the real Redis.

One seed is one random story: accounts registered, amended, extended, frozen, unfrozen and
closed; declarations verified (the quota reserved by the real Lua script), deducted by the real
``GuaranteeProcessor`` one by one or in batches, cancelled, returned in parts, settled, voided
at random; inputs delivered twice, or lost to a crash between their Redis effect and the flush
of their outputs and delivered again later; and rebuilds: ``sandan guarantee rebuild`` and
``sandan quota rebuild``'s comparison over the records the services published, sometimes
after Redis lost everything and was repaired from them. The exact model (``model``) says
what every answer and every balance must be; the invariants are checked after the steps.

About a third of the stories also have failovers: Redis rolls back the last K writes of an
account (the primary died, the promoted replica had not received them; what SANDAN_REDIS_WAIT_REPLICAS
prevents) and the story goes on on the older state, forking the account's ``seq``. Until the
repair, the model follows what the real code published for that account (the truth, though
decided on the older state), and the account gets no new voids (a lost void followed by another
of the same bill can give back more than the bill: a ledger problem for a person, not a repair).
Then ``sandan guarantee rebuild --repair`` (a correcting entry for each fork) and every
invariant again, bar "available never below zero" for such an account: the guarantee did not
cover the deductions the lost write hid.

Every record a service publishes goes through its Avro schema, as on Kafka, into the
simulated topics the rebuilds read. Run one seed by hand: ``make ledger-sim SEED=N``.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from services.common.avro import codec
from services.common.deadletter import dead_letter
from services.common.money import from_units
from services.common.quota import rebuild as quota_rebuild
from services.common.quota.contract import QuotaRelease
from services.common.quota.sources import RedisQuotaHashes
from services.common.quota.store import RedisPartReleases, RedisQuotaStore, Reservation
from services.tax_guarantee import ledger, reconcile
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.redis_store import RedisAccountStore
from services.tax_guarantee.store import Applied, Refused
from tests.sim import model as m

NOW_MS = 1749960000000  # 2025-06-15 12:00 China time: model.TODAY
CODES = ("ASSURE0001", "ASSURE0002", "ASSURE0003")  # the third is rarely registered: GUARANTEE_UNKNOWN
BUYERS = ("b" * 31 + "1", "b" * 31 + "2")
YEARS = (2025, 2026)
WIRE = codec()
REPRODUCE = "make ledger-sim SEED={seed}"
FAILOVER_SHARE = 0.35   # of the stories that have failovers
COMMANDS = "guarantee.commands"  # the dead letters' source: the topic the refused commands came from


class Violation(AssertionError):
    """The real code and the model (or an invariant) disagree."""


def units(amount: Decimal | None) -> int:
    value = (amount or Decimal(0)).scaleb(5)
    if value != value.to_integral_value():
        raise Violation(f"{amount} is finer than 0.00001 CNY")
    return int(value)


def cny(n: int) -> Decimal:
    return from_units(n)


def wire(schema: str, record: dict) -> dict:
    """The record as a reader of its topic gets it back."""
    return WIRE.decode(WIRE.encode(schema, record))[1]


@dataclass
class Declaration:
    decl: str
    code: str
    buyer: str
    year: int
    p: int    # taxable value, units
    tax: int  # units, whole fen
    verdict: dict = field(default_factory=dict)


@dataclass
class Topics:
    """What the services published, as the rebuilds would read it from Kafka."""
    verdicts: list[dict] = field(default_factory=list)    # declarations.verdicts (verified)
    refused: list[dict] = field(default_factory=list)     # declarations.refused
    releases: list[dict] = field(default_factory=list)    # quota.releases
    ledger: list[dict] = field(default_factory=list)      # guarantee.ledger
    cleared: set[str] = field(default_factory=set)        # declarations.cleared, by id
    deadletter: list[dict] = field(default_factory=list)  # deadletter: the refused commands (app.py's reject)


class Simulation:
    def __init__(self, seed: int, redis, namespace: str, steps: int = 30) -> None:
        self.seed = seed
        self.rnd = random.Random(seed)
        self.steps = steps
        self.redis = redis
        self.ns = namespace
        self.model = m.Model()
        self.accounts = RedisAccountStore(redis, namespace)
        self.quota = RedisQuotaStore(redis, namespace)
        self.parts = RedisPartReleases(redis, namespace)
        self.processor = GuaranteeProcessor(store=self.accounts, quota=self.quota,
                                            thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30)
        self.topics = Topics()
        self.declarations: dict[str, Declaration] = {}
        self.matched: list[str] = []            # verified, waiting for tax_guarantee
        self.delivered: list[tuple] = []        # every input delivered so far (for replays)
        self.lost: list[tuple] = []             # inputs whose outputs a crash lost: Kafka delivers them again
        self.log: list[str] = []
        self.counter = 0
        self.clock = NOW_MS  # the services' clock: a millisecond on per input (ledger entries' ``at``)
        self.failovers = self.rnd.random() < FAILOVER_SHARE
        self.snaps: dict[str, list[tuple[bytes, dict]]] = {}  # per account: (seq, its keys DUMPed) after each change
        self.diverged: set[str] = set()     # accounts whose Redis lost writes, until the repair
        self.failed_over: set[str] = set()  # ... ever since the story began

    # --- running -----------------------------------------------------------------------------
    async def run(self) -> None:
        for code in CODES[:2]:
            await self.register(code)
        ops = [(self.declare, 10), (self.deduct_batch, 8), (self.cancel, 2), (self.return_part, 3),
               (self.settle, 2), (self.void_any, 1), (self.amend, 2), (self.freeze_or_unfreeze, 2),
               (self.extend, 1), (self.close, 0.3), (self.register_any, 0.5), (self.replay, 3),
               (self.redeliver_lost, 2), (self.rebuild, 0.7)] + ([(self.failover, 1.5)] if self.failovers else [])
        funcs, weights = zip(*ops)
        for _ in range(self.steps):
            await self.rnd.choices(funcs, weights)[0]()
        while self.lost or self.matched:
            await self.redeliver_lost(everything=True)
            await self.deduct_batch(everything=True)
        await self.repair_failover()
        await self.check()
        await self.compare_rebuilds()

    def fail(self, what: str) -> None:
        trail = "\n  ".join(self.log[-40:])
        raise Violation(f"ledger simulation, seed {self.seed}: {what}\n  last steps:\n  {trail}\n"
                        f"reproduce: {REPRODUCE.format(seed=self.seed)}")

    def now(self) -> int:
        self.clock += 1
        return self.clock

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}{self.counter}"

    # --- delivery: normal, twice, or lost to a crash after the effect ------------------------------
    async def deliver(self, item: tuple, *, mode: str | None = None) -> None:
        mode = mode or self.rnd.choices(["once", "twice", "crash"], [8, 1, 1])[0]
        if self.diverged:
            item = self.unsent(item)
            if item is None:
                return
            if self.touches_diverged(item):
                mode = "once"  # exactly-once delivery: an input taken before is not redelivered
        self.log.append(f"{mode}: {item[0]} {item[1:]!s:.160}")
        self.delivered.append(item)
        outputs = await self.apply(item)
        if self.failovers:
            await self.snapshot_accounts()
        if mode == "crash":  # the effect is in Redis, the outputs never reached Kafka
            self.lost.append(item)
            return
        self.publish(outputs)
        if mode == "twice":
            again = await self.apply(item)
            if [(t, r) for t, r in again if t != "declarations.verdicts"] != \
                    [(t, r) for t, r in outputs if t != "declarations.verdicts"]:
                self.fail(f"a redelivery of {item[0]} answered differently:\n{outputs}\n{again}")
            self.publish(again)

    def publish(self, outputs: list[tuple[str, dict]]) -> None:
        for topic, record in outputs:
            if topic == "declarations.verdicts":
                self.topics.verdicts.append(record)
                self.matched.append(record["declarationId"])
            elif topic == "declarations.refused":
                self.topics.refused.append(record)
            elif topic == "quota.releases":
                self.topics.releases.append(record)
            elif topic == "guarantee.ledger":
                self.topics.ledger.append(record)
            elif topic == "declarations.cleared":
                self.topics.cleared.add(record["declarationId"])
            elif topic == "deadletter":
                self.topics.deadletter.append(record)

    async def apply(self, item: tuple) -> list[tuple[str, dict]]:
        """The real code's handling of one input (and the model's), checked against each other."""
        kind = item[0]
        if kind == "decide":
            return await self._decide(self.declarations[item[1]])
        if kind == "deduct":
            return await self._deduct([self.declarations[d] for d in item[1]])
        if kind == "command":
            return await self._command(item[1], item[2])
        if kind == "release":
            return await self._release(item[1])
        raise ValueError(kind)

    async def _decide(self, d: Declaration) -> list[tuple[str, dict]]:
        """order_match's part: reserve the quota, publish the verified verdict."""
        [(ok, _)] = await self.quota.run([Reservation(d.decl, d.buyer, d.year, cny(d.p), cny(m.ANNUAL_LIMIT))])
        expected = self.model.reserve(d.decl, d.buyer, d.year, d.p)
        if ok != expected:
            self.fail(f"quota reservation of {d.decl} ({d.p} units) answered {ok}, the model {expected}")
        return [("declarations.verdicts", d.verdict)] if ok else []

    async def _deduct(self, batch: list[Declaration]) -> list[tuple[str, dict]]:
        if len(batch) == 1 and self.rnd.random() < 0.5:
            handled = [await self.processor.on_verdict(batch[0].verdict, self.now())]
        else:
            handled = await self.processor.on_verdicts([d.verdict for d in batch], self.now())
        outputs = []
        for d, h in zip(batch, handled):
            if d.code in self.diverged:
                got = _answer(h.outcome)
                self.model.follow(d.code, f"deduct/{d.decl}", got, _effect(h.outputs))
                if got != "applied":
                    self.model.release(d.decl, d.buyer, d.year)
                outputs += [(o.topic, wire(o.schema, o.record)) for o in h.outputs if o.topic != "receipts"]
                continue
            expected = self.model.deduct(d.code, d.decl, d.tax)
            if expected != "applied":
                self.model.release(d.decl, d.buyer, d.year)
            got = _answer(h.outcome)
            if got != expected:
                self.fail(f"deduction of {d.decl} ({d.tax} units from {d.code}) answered {got}, the model {expected}")
            outputs += [(o.topic, wire(o.schema, o.record)) for o in h.outputs if o.topic != "receipts"]
        return outputs

    async def _command(self, record: dict, expect: dict) -> list[tuple[str, dict]]:
        h = await self.processor.on_command(record, self.now())
        outputs = [(o.topic, wire(o.schema, o.record)) for o in h.outputs if o.topic != "receipts"]
        if h.rejected_input is not None:  # the worker dead-letters a refused command (app.py's reject)
            r = h.rejected_input
            dead = dead_letter(COMMANDS, 0, None, record["assureCode"].encode(),
                               WIRE.encode("sandan.GuaranteeCommand", record), r.code, r.field, r.message,
                               record["commandId"])
            outputs.append(("deadletter", wire(dead.schema, dict(dead.record, at=NOW_MS))))
        if record["assureCode"] in self.diverged:
            self.model.follow(record["assureCode"], f"command/{record['commandId']}", _answer(h.outcome),
                              _effect(h.outputs))
            return outputs
        expected = self.model.command(record["assureCode"], record["commandId"], record["action"], **expect)
        got = _answer(h.outcome)
        if got != expected:
            self.fail(f"{record['action']} {record['commandId']} on {record['assureCode']} answered {got},"
                      f" the model {expected}")
        return outputs

    async def _release(self, release: QuotaRelease) -> list[tuple[str, dict]]:
        """returns' part: give quota back (all, or one part once), publish the release."""
        if release.part is None:
            await self.quota.release(release.declaration_id, release.buyer_key, release.year)
            self.model.release(release.declaration_id, release.buyer_key, release.year)
        else:
            await self.parts.release_part(release.declaration_id, release.part, release.buyer_key, release.year,
                                          release.amount)
            self.model.release_part(release.declaration_id, release.part, release.buyer_key, release.year,
                                    units(release.amount))
        out = release.output(NOW_MS)
        return [(out.topic, wire(out.schema, out.record))]

    # --- the operations ------------------------------------------------------------------------
    def command(self, code: str, action: str, command_id: str | None = None, **fields) -> tuple:
        record = {"commandId": command_id or self.next_id(f"{action}-"), "action": action, "assureCode": code,
                  "kind": None, "amount": None, "validFrom": None, "validTo": None, "declarationId": None,
                  "bills": [], "entDutyNo": None, "reason": None, "actor": "sim", "at": NOW_MS}
        expect = {}
        if "amount" in fields:
            record["amount"], expect["amount"] = cny(fields["amount"]), fields["amount"]
        if action == "register":
            record.update(kind="bank_guarantee", validFrom=str(fields["valid_from"]), validTo=str(fields["valid_to"]))
            expect.update(valid_from=fields["valid_from"], valid_to=fields["valid_to"])
        if action == "extend":
            record["validTo"], expect["valid_to"] = str(fields["valid_to"]), fields["valid_to"]
        if action == "void":
            record["declarationId"] = expect["decl"] = fields["decl"]
        if action == "settle":
            record.update(bills=list(fields["bills"]), entDutyNo=record["commandId"])
            expect["bills"] = tuple(fields["bills"])
        return ("command", wire("sandan.GuaranteeCommand", record), expect)

    def amount(self, low_cny: int, high_cny: int) -> int:
        return self.rnd.randint(low_cny * 100, high_cny * 100) * 1000  # whole fen

    async def register(self, code: str) -> None:
        valid_to = self.rnd.choices([20251231, 20250614], [9, 1])[0]  # now and then expired already
        await self.deliver(self.command(code, "register", amount=self.amount(1, 4000), valid_from=20250101,
                                        valid_to=valid_to))

    async def register_any(self) -> None:
        await self.register(self.rnd.choice(CODES))

    async def amend(self) -> None:
        code = self.rnd.choice(CODES)
        acct = self.model.accounts.get(code)
        amount = acct.outstanding if acct and self.rnd.random() < 0.2 else self.amount(1, 5000)
        await self.deliver(self.command(code, "amend", amount=max(amount, 1000)))

    async def extend(self) -> None:
        await self.deliver(self.command(self.rnd.choice(CODES), "extend",
                                        valid_to=self.rnd.choice([20250614, 20251231, 20261231])))

    async def freeze_or_unfreeze(self) -> None:
        await self.deliver(self.command(self.rnd.choice(CODES), self.rnd.choice(["freeze", "unfreeze"])))

    async def close(self) -> None:
        await self.deliver(self.command(self.rnd.choice(CODES), "close"))

    async def declare(self) -> None:
        buyer, year = self.rnd.choice(BUYERS), self.rnd.choices(YEARS, [4, 1])[0]
        left = m.ANNUAL_LIMIT - self.model.quota_total(buyer, year)
        # now and then exactly what is left of the year (the limit is inclusive) or one unit more
        p = self.rnd.choices([self.rnd.randint(1, 500_000_000), left, left + 1], [8, 1, 1])[0]
        p = min(max(p, 1), 500_000_000)
        tax = self.rnd.randint(0, p * 23 // 100 // 1000) * 1000
        d = Declaration(self.next_id("EBP:O"), self.rnd.choices(CODES, [5, 5, 1])[0], buyer, year, p, tax)
        d.verdict = wire("sandan.Verdict", {
            "declarationId": d.decl, "ebpCode": "EBP", "orderNo": d.decl[4:], "status": "verified", "failures": [],
            "missing": [], "customsTax": Decimal(0), "consumptionTax": Decimal(0), "valueAddedTax": cny(tax),
            "taxTotal": cny(tax), "taxableValue": cny(p), "assureCode": d.code, "buyerKey": buyer,
            "quotaYear": year, "inventory": None, "lastDocumentAt": NOW_MS, "decidedAt": NOW_MS})
        self.declarations[d.decl] = d
        await self.deliver(("decide", d.decl))

    async def deduct_batch(self, everything: bool = False) -> None:
        if not self.matched:
            return
        n = len(self.matched) if everything else self.rnd.randint(1, min(4, len(self.matched)))
        batch = [self.matched.pop(self.rnd.randrange(len(self.matched))) for _ in range(n)]
        await self.deliver(("deduct", tuple(batch)))

    def bills(self, code: str | None = None) -> list[tuple[str, str]]:
        """(code, declaration) of the bills the model holds."""
        return [(c, decl) for c, acct in sorted(self.model.accounts.items()) if code in (None, c)
                for decl in sorted(acct.bills)]

    async def cancel(self) -> None:
        bills = self.bills()
        if not bills:
            return
        code, decl = self.rnd.choice(bills)
        d = self.declarations[decl]
        if d.tax > 0:
            await self.deliver(self.command(code, "void", f"cancel:{decl}", decl=decl, amount=d.tax))
        await self.deliver(("release", QuotaRelease(decl, d.buyer, d.year)))

    async def return_part(self) -> None:
        bills = self.bills()
        if not bills:
            return
        code, decl = self.rnd.choice(bills)
        d, part = self.declarations[decl], self.next_id("return:")
        if d.tax > 0:
            amount = self.rnd.randint(1, d.tax // 1000 + 1) * 1000  # up to a fen more than the bill: cut to it
            await self.deliver(self.command(code, "void", part, decl=decl, amount=amount))
        await self.deliver(("release", QuotaRelease(decl, d.buyer, d.year, part,
                                                    cny(self.rnd.randint(1, d.p)))))

    async def settle(self) -> None:
        code = self.rnd.choice(CODES[:2])
        bills = [decl for _, decl in self.bills(code)]
        if not bills:
            return
        chosen = self.rnd.sample(bills, self.rnd.randint(1, min(3, len(bills))))
        await self.deliver(self.command(code, "settle", bills=chosen))

    async def void_any(self) -> None:
        decl = self.rnd.choice(sorted(self.declarations) or ["EBP:none"])
        await self.deliver(self.command(self.rnd.choice(CODES), "void", decl=decl, amount=self.amount(0, 300) + 1000))

    async def replay(self) -> None:
        """An input delivered again later (a consumer that restarted from an older offset)."""
        if self.delivered:
            await self.deliver(self.rnd.choice(self.delivered), mode="once")

    async def redeliver_lost(self, everything: bool = False) -> None:
        while self.lost:
            await self.deliver(self.lost.pop(self.rnd.randrange(len(self.lost))), mode="once")
            if not everything:
                break

    # --- failovers: Redis rolls back the last writes of an account ----------------------------------
    def account_patterns(self, code: str) -> list[str]:
        ns = _glob(f"{self.ns}guarantee:")
        return [f"{ns}account:{_glob(code)}", f"{ns}bill:{_glob(code)}:*", f"{ns}outcome:{_glob(code)}/*"]

    async def account_keys(self, code: str) -> list[bytes]:
        return [k for pattern in self.account_patterns(code)
                async for k in self.redis.scan_iter(match=pattern, count=1000)]

    async def snapshot_accounts(self) -> None:
        """Each account's keys as they are after a change (what a replica may be left with)."""
        for code in CODES:
            seq = await self.redis.hget(self.accounts.account_key(code), "seq")
            snaps = self.snaps.setdefault(code, [])
            if seq is not None and (not snaps or snaps[-1][0] != seq):
                keys = await self.account_keys(code)
                snaps.append((seq, dict(zip(keys, [await self.redis.dump(k) for k in keys]))))

    async def failover(self) -> None:
        """The primary dies; the replica promoted lacks the account's last K writes, whose outputs
        were published. The story goes on on the older state."""
        if self.diverged:
            return
        await self.redeliver_lost(everything=True)
        candidates = [code for code in CODES if len(self.snaps.get(code, ())) >= 2]
        if not candidates:
            return
        code = self.rnd.choice(candidates)
        snaps = self.snaps[code]
        k = self.rnd.randint(1, min(3, len(snaps) - 1))
        del snaps[len(snaps) - k:]
        if keys := await self.account_keys(code):
            await self.redis.delete(*keys)
        for key, dumped in snaps[-1][1].items():
            await self.redis.restore(key, 0, dumped)
        self.log.append(f"failover: {code} lost its last {k} writes (back to seq {snaps[-1][0].decode()})")
        self.diverged.add(code)
        self.failed_over.add(code)
        self.delivered.clear()  # what was taken before is committed: not delivered again

    def touches_diverged(self, item: tuple) -> bool:
        if item[0] == "command":
            return item[1]["assureCode"] in self.diverged
        return item[0] == "deduct" and any(self.declarations[d].code in self.diverged for d in item[1])

    def unsent(self, item: tuple) -> tuple | None:
        """``item`` less what nobody would send for a diverged account: an input decided before
        (exactly-once: not redelivered) and, until the repair, voids (see the module's doc)."""
        if item[0] == "command":
            code, record = item[1]["assureCode"], item[1]
            if code in self.diverged and ((code, f"command/{record['commandId']}") in self.model.decided
                                          or record["action"] == "void"):
                return None
            return item
        if item[0] == "deduct":
            kept = tuple(d for d in item[1] if self.declarations[d].code not in self.diverged
                         or (self.declarations[d].code, f"deduct/{d}") not in self.model.decided)
            return ("deduct", kept) if kept else None
        return item

    async def repair_failover(self) -> None:
        """``sandan guarantee rebuild --repair`` (workers stopped) after a failover: the ledger may
        hold forks, each reported once, and nothing else; a correcting entry is appended for each
        forked account and Redis is written from the replay."""
        if not self.diverged:
            return
        await self.redeliver_lost(everything=True)
        self.log.append(f"rebuild --repair after the failover of {sorted(self.diverged)}")
        for code, acct in sorted(ledger.replay(self.topics.ledger).items()):
            if acct.forks and code not in self.diverged:
                self.fail(f"{code}: a forked seq without a failover: {acct.problems}")
            if other := [p for p in acct.problems if " is used by " not in p]:
                self.fail(f"{code}: the ledger after a failover: {other}")
            if len([p for p in acct.problems if " is used by " in p]) != len(acct.forks):
                self.fail(f"{code}: forks {acct.forks} reported as {acct.problems}")
            if acct.forks:
                fix = ledger.correction(acct, self.now(), "sim")
                self.topics.ledger.append(wire("sandan.LedgerEntry", fix))
                acct = ledger.replay(self.topics.ledger)[code]
                if acct.problems or acct.forks or len(acct.notes) != len(set(acct.notes)):
                    self.fail(f"{code}: the ledger after its correction: {acct.problems} {acct.notes}")
            found = reconcile.compare(acct, await self.accounts.account(code), await self.accounts.bills_of(code),
                                      await self.accounts.recorded_entries(code))
            if found.differences:
                await self.accounts.restore(acct, found.stray_bills, found.missing_entries)
        # refusals are outcomes in Redis too: the lost ones come back from declarations.refused and deadletter
        await self.accounts.restore_refusals(await self.accounts.missing_refusals(self.refusals()))
        self.diverged.clear()
        self.snaps.clear()

    # --- invariants ----------------------------------------------------------------------------
    async def check(self) -> None:
        """Redis equals the model: balances, bills, quotas; nothing below zero; no double deduction."""
        for code in CODES:
            if code in self.diverged:  # its Redis lost writes: compared once repaired
                continue
            want, have = self.model.accounts.get(code), await self.accounts.account(code)
            if want is None:
                if have is not None:
                    self.fail(f"{code} has an account in Redis and none in the model")
                continue
            if have is None:
                self.fail(f"{code}: no account in Redis")
            got = (units(have.guaranteed), units(have.outstanding), have.state, int(have.valid_to.strftime("%Y%m%d")))
            if got != (want.guaranteed, want.outstanding, want.state, want.valid_to):
                self.fail(f"{code}: Redis (guaranteed, outstanding, state, validTo) {got}, the model"
                          f" {(want.guaranteed, want.outstanding, want.state, want.valid_to)}")
            if have.outstanding < 0 or (have.available < 0 and code not in self.failed_over):
                self.fail(f"{code}: below zero: outstanding {have.outstanding}, available {have.available}")
            bills = {decl: (units(b.deducted), units(b.voided), bool(b.settled_by), units(b.refunded))
                     for decl, b in (await self.accounts.bills_of(code)).items()}
            model_bills = {decl: (b.deducted, b.voided, b.settled, b.refunded) for decl, b in want.bills.items()}
            if bills != model_bills:
                self.fail(f"{code}: bills in Redis {bills}, in the model {model_bills}")
        found = await RedisQuotaHashes(self.redis, self.ns).read_all()
        for (buyer, year), held in self.model.held.items():
            have = found.get((buyer, year), quota_rebuild.QuotaHash(total=Decimal(0)))
            if {d: units(a) for d, a in have.held.items()} != held or units(have.total) != sum(held.values()):
                self.fail(f"quota {buyer[-1]}/{year}: Redis {have.held} total {have.total}, the model {held}")
            if units(have.total) > m.ANNUAL_LIMIT:
                self.fail(f"quota {buyer[-1]}/{year} beyond the annual limit: {have.total}")
        copies: dict[str, dict] = {}
        deducted: dict[str, set[str]] = defaultdict(set)
        for entry in self.topics.ledger:
            if copies.setdefault(entry["entryId"], entry) != entry:
                self.fail(f"two different ledger entries {entry['entryId']}")
            if entry["action"] == "deduct":
                deducted[entry["declarationId"]].add(entry["entryId"])
        if twice := [d for d, ids in deducted.items() if len(ids) > 1]:
            self.fail(f"deducted twice: {twice}")
        if both := self.topics.cleared & {r["declarationId"] for r in self.topics.refused}:
            self.fail(f"both cleared and refused: {sorted(both)}")

    async def compare_rebuilds(self) -> dict:
        """``sandan guarantee rebuild`` and ``sandan quota rebuild`` (their comparison, without Kafka)."""
        rebuilt = ledger.replay(self.topics.ledger)
        differences = reconcile.unknown_to_ledger(await self.accounts.account_codes(), rebuilt)
        refused = self.refusals()
        if missing := await self.accounts.missing_refusals(refused):
            self.fail(f"guarantee rebuild: refusals on declarations.refused or deadletter without their outcome in"
                      f" Redis: {missing}")
        found = {}
        for code, acct in sorted(rebuilt.items()):
            found[code] = reconcile.compare(acct, await self.accounts.account(code), await self.accounts.bills_of(code),
                                            await self.accounts.recorded_entries(code))
            differences += found[code].differences
        if differences:
            self.fail(f"guarantee rebuild: Redis differs from the ledger: {differences}")
        for code, acct in rebuilt.items():
            model_acct = self.model.accounts[code]
            if units(acct.account.outstanding) != model_acct.outstanding:
                self.fail(f"{code}: the ledger says outstanding {acct.account.outstanding}, the model"
                          f" {model_acct.outstanding}")
        quotas = quota_rebuild.rebuild(self.topics.verdicts, self.topics.refused, self.topics.releases)
        if quotas.problems:
            self.fail(f"quota rebuild: {quotas.problems}")
        if diffs := quota_rebuild.compare(quotas, await RedisQuotaHashes(self.redis, self.ns).read_all()):
            self.fail(f"quota rebuild: Redis differs from the topics: {diffs}")
        for (buyer, year), held in self.model.held.items():
            if units(quotas.quotas.get((buyer, year), quota_rebuild.QuotaHash(total=Decimal(0))).total) != \
                    sum(held.values()):
                self.fail(f"quota {buyer[-1]}/{year}: the topics say {quotas.quotas.get((buyer, year))},"
                          f" the model {held}")
        return {"guarantee": rebuilt, "quota": quotas, "refusals": refused}

    def refusals(self) -> list[ledger.RecordedRefusal]:
        """The refused deductions and commands, as ``sandan guarantee rebuild`` reads them."""
        return ledger.refusals(self.topics.refused) + \
            ledger.command_refusals(self.topics.deadletter, COMMANDS, WIRE.decode)

    async def rebuild(self) -> None:
        """A rebuild's comparison; now and then Redis loses everything and is repaired from Kafka.

        As the README asks, with the workers stopped: what a crash left undelivered is delivered
        first (their restart), and after a repair only what comes later can be redelivered.
        """
        await self.redeliver_lost(everything=True)
        await self.repair_failover()
        self.log.append("rebuild")
        await self.check()
        rebuilt = await self.compare_rebuilds()
        if self.rnd.random() < 0.4:
            self.log.append("redis wiped, repaired from the ledger and the topics")
            await self.wipe()
            self.delivered.clear()
            for code, acct in rebuilt["guarantee"].items():
                found = reconcile.compare(acct, None, {}, set())
                await self.accounts.restore(acct, found.stray_bills, found.missing_entries)
            await self.accounts.restore_refusals(rebuilt["refusals"])
            await RedisQuotaHashes(self.redis, self.ns).restore(rebuilt["quota"], list(rebuilt["quota"].quotas))
            self.snaps.clear()
            await self.check()
            await self.compare_rebuilds()

    async def wipe(self) -> int:
        keys = [k async for k in self.redis.scan_iter(match=_glob(self.ns) + "*", count=1000)]
        if keys:
            await self.redis.delete(*keys)
        return len(keys)


def _answer(outcome) -> str:
    if isinstance(outcome, Applied):
        return "applied"
    if isinstance(outcome, Refused):
        return outcome.refusal.code
    return f"no outcome ({outcome!r})"


def _effect(outputs) -> dict | None:
    """An applied change's ledger entry as the model follows it (amounts in units)."""
    for o in outputs:
        if o.topic == "guarantee.ledger":
            e = o.record
            return {"action": e["action"], "amount": units(e["amount"]), "decl": e["declarationId"],
                    "bills": list(e["bills"]), "state": e["state"], "valid_to": int(e["validTo"])}
    return None


SIM_DB = 15


def _glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def run_seeds(seeds, redis_url: str, namespace: str, steps: int = 30) -> int:
    """Each seed under a namespace of its own, wiped afterwards; the number of seeds run."""
    import redis.asyncio as aioredis

    # a logical database of its own: the snapshots and rebuilds scan the keyspace, which is only
    # the simulation's there, whatever else the server holds
    client = aioredis.from_url(urlunsplit(urlsplit(redis_url)._replace(path=f"/{SIM_DB}")))
    done = 0
    try:
        for seed in seeds:
            sim = Simulation(seed, client, f"{namespace}s{seed}-", steps)
            try:
                await sim.run()
            finally:
                await sim.wipe()
            done += 1
    finally:
        await client.aclose()
    return done


def main(argv=None) -> int:
    from services.common import config

    parser = argparse.ArgumentParser(prog="python -m tests.sim.ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed (default 1)")
    parser.add_argument("--steps", type=int, default=30, help="operations per seed (default 30)")
    args = parser.parse_args(argv)
    ns = f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}ledger-sim-"
    try:
        done = asyncio.run(run_seeds(range(args.seed, args.seed + args.seeds), config.get("SANDAN_REDIS_URL"), ns,
                                     args.steps))
    except Violation as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{done} seeds from {args.seed}, {args.steps} steps each: no invariant violated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
