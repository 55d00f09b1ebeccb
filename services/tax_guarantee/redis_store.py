"""Guarantee accounts in Redis: one Lua script commits a decided change atomically and once.

Keys (``ns`` = ``sandan:<topic prefix>``):

- ``{ns}guarantee:account:<assureCode>`` hash: kind, guaranteed, outstanding, state,
  validFrom, validTo, seq (amounts as integers of 0.00001 CNY);
- ``{ns}guarantee:accounts`` set of every assureCode with an account;
- ``{ns}guarantee:bill:<assureCode>:<declarationId>`` hash: deducted, voided, settledBy, refunded;
- ``{ns}guarantee:outcome:<assureCode>/<idempotency key>``: the recorded outcome (ledger
  entry and warnings, or the refusal) of a deduction or command;
- ``{ns}guarantee:expiry-warned:<assureCode>:<YYYYMMDD>``: expiry warned that day (expires).

The script checks that no outcome was recorded for the key and that the account's ``seq`` is
the one the decision was based on, then writes the account, its bills and the outcome in
one step; the rules themselves stay in Python (``rules``). The script does no arithmetic, so
amounts never pass through Lua's floating-point numbers.
"""
from __future__ import annotations

import json
from datetime import date

from services.common import config
from services.common.money import from_units, to_units
from services.tax_guarantee.account import Account, Bill, day_text, parse_day
from services.tax_guarantee.ledger import RecordedRefusal, Rebuilt, entry_id
from services.tax_guarantee.rules import Change
from services.tax_guarantee.store import Applied, Chain, Outcome, Refused, Snapshot, dump_outcome, load_outcome

# KEYS: 1 account, 2 outcome, 3 accounts index, 4.. bills
# ARGV: 1 seq the decision read ('' = no account), 2 assureCode, 3 outcome,
#       4 account fields as a JSON object ('' = unchanged), 5.. one JSON object per bill key
_COMMIT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'decided' end
local seq = redis.call('HGET', KEYS[1], 'seq') or ''
if seq ~= ARGV[1] then return 'moved' end
if ARGV[4] ~= '' then
  for name, value in pairs(cjson.decode(ARGV[4])) do redis.call('HSET', KEYS[1], name, value) end
  redis.call('SADD', KEYS[3], ARGV[2])
end
for i = 4, #KEYS do
  for name, value in pairs(cjson.decode(ARGV[i + 1])) do redis.call('HSET', KEYS[i], name, value) end
end
redis.call('SET', KEYS[2], ARGV[3])
return 'applied'
"""

# The decisions of one account in a batch (store.Chain), all or none, with the same checks.
# KEYS: 1 account, 2 accounts index, 3..2+n the chain's outcome keys, then its bill keys
# ARGV: 1 seq the chain read ('' = no account), 2 assureCode, 3 the account after the chain
#       as a JSON object ('' = unchanged), 4 n, 5..4+n the outcomes, then one JSON object per bill key
_COMMIT_CHAIN = """
local n = tonumber(ARGV[4])
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + i]) == 1 then return 'decided' end
end
local seq = redis.call('HGET', KEYS[1], 'seq') or ''
if seq ~= ARGV[1] then return 'moved' end
if ARGV[3] ~= '' then
  for name, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], name, value) end
  redis.call('SADD', KEYS[2], ARGV[2])
end
for i = 3 + n, #KEYS do
  for name, value in pairs(cjson.decode(ARGV[i + 2])) do redis.call('HSET', KEYS[i], name, value) end
end
for i = 1, n do redis.call('SET', KEYS[2 + i], ARGV[4 + i]) end
return 'applied'
"""

EXPIRY_MARK_SECONDS = 2 * 24 * 3600


def namespace() -> str:
    """Redis key prefix of this deployment (the quota keys of order_match live under it too)."""
    return f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}"


def _glob(text: str) -> str:
    """``text`` with Redis glob specials escaped, for SCAN patterns."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def account_fields(account: Account) -> dict[str, str]:
    return {"kind": account.kind, "guaranteed": str(to_units(account.guaranteed)),
            "outstanding": str(to_units(account.outstanding)), "state": account.state,
            "validFrom": day_text(account.valid_from), "validTo": day_text(account.valid_to), "seq": str(account.seq)}


def account_of(assure_code: str, fields: dict) -> Account | None:
    if not fields:
        return None
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return Account(assure_code, f["kind"], from_units(int(f["guaranteed"])), from_units(int(f["outstanding"])),
                   f["state"], parse_day(f["validFrom"]), parse_day(f["validTo"]), int(f["seq"]))


def bill_fields(bill: Bill) -> dict[str, str]:
    return {"deducted": str(to_units(bill.deducted)), "voided": str(to_units(bill.voided)),
            "settledBy": bill.settled_by, "refunded": str(to_units(bill.refunded))}


def bill_of(declaration_id: str, fields: dict) -> Bill | None:
    if not fields:
        return None
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return Bill(declaration_id, from_units(int(f["deducted"])), from_units(int(f["voided"])), f["settledBy"],
                from_units(int(f.get("refunded", 0))))  # bills written before refunds existed have none


class RedisAccountStore:
    def __init__(self, redis, namespace: str = "sandan:") -> None:
        self._redis = redis
        self._ns = f"{namespace}guarantee:"
        self._commit = redis.register_script(_COMMIT)
        self._commit_chain = redis.register_script(_COMMIT_CHAIN)

    # keys
    def account_key(self, code: str) -> str:
        return f"{self._ns}account:{code}"

    def bill_key(self, code: str, declaration_id: str) -> str:
        return f"{self._ns}bill:{code}:{declaration_id}"

    def outcome_key(self, code: str, key: str) -> str:
        return f"{self._ns}outcome:{entry_id(code, key)}"

    @property
    def index_key(self) -> str:
        return f"{self._ns}accounts"

    # the AccountStore contract
    async def snapshot(self, assure_code: str, key: str, bill_ids: tuple[str, ...] = ()) -> Snapshot:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self.outcome_key(assure_code, key))
        pipe.hgetall(self.account_key(assure_code))
        for decl in bill_ids:
            pipe.hgetall(self.bill_key(assure_code, decl))
        raw, fields, *bills = await pipe.execute()
        found = {decl: bill_of(decl, f) for decl, f in zip(bill_ids, bills) if f}
        return Snapshot(assure_code, key, account_of(assure_code, fields), found,
                        load_outcome(raw) if raw is not None else None)

    async def commit(self, snapshot: Snapshot, outcome: Outcome, change: Change | None) -> bool:
        code = snapshot.assure_code
        bills = change.bills if change else ()
        keys = [self.account_key(code), self.outcome_key(code, snapshot.key), self.index_key,
                *(self.bill_key(code, b.declaration_id) for b in bills)]
        args = [str(snapshot.account.seq) if snapshot.account else "", code, dump_outcome(outcome),
                json.dumps(account_fields(change.account)) if change else "",
                *(json.dumps(bill_fields(b)) for b in bills)]
        return await self._commit(keys=keys, args=args) == b"applied"

    async def snapshots(self, requests) -> list[Snapshot]:
        codes = sorted({code for code, _ in requests})
        pipe = self._redis.pipeline(transaction=False)
        for code, key in requests:
            pipe.get(self.outcome_key(code, key))
        for code in codes:
            pipe.hgetall(self.account_key(code))
        answers = await pipe.execute()
        accounts = {code: account_of(code, fields) for code, fields in zip(codes, answers[len(requests):])}
        return [Snapshot(code, key, accounts[code], {}, load_outcome(raw) if raw is not None else None)
                for (code, key), raw in zip(requests, answers[:len(requests)])]

    async def commit_chains(self, chains) -> list[bool]:
        if not chains:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for chain in chains:
            code, read, final = chain.base.assure_code, chain.base.account, chain.account
            bills = [bill for _, _, change in chain.decisions if change is not None for bill in change.bills]
            keys = [self.account_key(code), self.index_key,
                    *(self.outcome_key(code, key) for key, _, _ in chain.decisions),
                    *(self.bill_key(code, b.declaration_id) for b in bills)]
            args = [str(read.seq) if read else "", code, json.dumps(account_fields(final)) if final else "",
                    len(chain.decisions), *(dump_outcome(outcome) for _, outcome, _ in chain.decisions),
                    *(json.dumps(bill_fields(b)) for b in bills)]
            await self._commit_chain(keys=keys, args=args, client=pipe)  # queued: answered at execute()
        return [answer == b"applied" for answer in await pipe.execute()]

    async def account(self, assure_code: str) -> Account | None:
        return account_of(assure_code, await self._redis.hgetall(self.account_key(assure_code)))

    async def accounts(self) -> list[Account]:
        codes = sorted(c.decode() for c in await self._redis.smembers(self.index_key))
        pipe = self._redis.pipeline(transaction=False)
        for code in codes:
            pipe.hgetall(self.account_key(code))
        return [a for a in (account_of(c, f) for c, f in zip(codes, await pipe.execute())) if a is not None]

    async def outcome(self, assure_code: str, key: str) -> Outcome | None:
        raw = await self._redis.get(self.outcome_key(assure_code, key))
        return load_outcome(raw) if raw is not None else None

    async def claim_daily(self, assure_code: str, day: date) -> bool:
        mark = f"{self._ns}expiry-warned:{assure_code}:{day_text(day)}"
        return bool(await self._redis.set(mark, b"1", nx=True, ex=EXPIRY_MARK_SECONDS))

    # rebuild support (sandan guarantee rebuild)
    async def _scan(self, pattern: str) -> list[bytes]:
        return [k async for k in self._redis.scan_iter(match=pattern, count=1000)]

    async def bills_of(self, assure_code: str) -> dict[str, Bill]:
        prefix = self.bill_key(assure_code, "")
        keys = await self._scan(_glob(prefix) + "*")
        pipe = self._redis.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        decls = [k.decode()[len(prefix):] for k in keys]
        return {d: bill_of(d, f) for d, f in zip(decls, await pipe.execute()) if f}

    async def recorded_entries(self, assure_code: str) -> set[str]:
        """Ids of the entries whose outcome is recorded (a refusal has no entry and is not listed)."""
        prefix = f"{self._ns}outcome:"
        keys = await self._scan(_glob(f"{prefix}{assure_code}/") + "*")
        return {k.decode()[len(prefix):] for k in keys}

    async def account_codes(self) -> set[str]:
        return {c.decode() for c in await self._redis.smembers(self.index_key)}

    async def restore(self, rebuilt: Rebuilt, stray_bills: set[str], missing_entries: list[dict]) -> None:
        """Make Redis hold what the ledger says for one account (run with the workers stopped)."""
        code = rebuilt.account.assure_code
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.account_key(code))
        pipe.hset(self.account_key(code), mapping=account_fields(rebuilt.account))
        pipe.sadd(self.index_key, code)
        for decl in stray_bills:
            pipe.delete(self.bill_key(code, decl))
        for bill in rebuilt.bills.values():
            pipe.delete(self.bill_key(code, bill.declaration_id))
            pipe.hset(self.bill_key(code, bill.declaration_id), mapping=bill_fields(bill))
        for rec in missing_entries:
            key = rec["entryId"][len(code) + 1:]
            pipe.set(self.outcome_key(code, key), dump_outcome(Applied(rec)), nx=True)
        await pipe.execute()

    async def missing_refusals(self, refusals: list[RecordedRefusal]) -> list[RecordedRefusal]:
        """The refusals whose outcome Redis does not hold."""
        pipe = self._redis.pipeline(transaction=False)
        for r in refusals:
            pipe.exists(self.outcome_key(r.assure_code, r.key))
        return [r for r, present in zip(refusals, await pipe.execute()) if not present]

    async def restore_refusals(self, refusals: list[RecordedRefusal]) -> None:
        """Record each refusal as the outcome of its deduction, unless one is recorded already."""
        pipe = self._redis.pipeline(transaction=False)
        for r in refusals:
            pipe.set(self.outcome_key(r.assure_code, r.key), dump_outcome(Refused(r.refusal, r.at)), nx=True)
        await pipe.execute()

    async def wipe(self) -> int:
        """Delete every guarantee key of the namespace (tests and disaster drills); returns how many."""
        keys = await self._scan(_glob(self._ns) + "*")
        for start in range(0, len(keys), 500):
            await self._redis.delete(*keys[start:start + 500])
        return len(keys)
