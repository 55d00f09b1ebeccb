"""The numbers customs gives an inventory (DOMAIN §5): ``preNo`` on acceptance, ``invtNo`` on verification.

sandan plays the e-port here. ``preNo`` is ``B`` + the China date + a 9-digit sequence of that
day; ``invtNo`` is the inventory's 4-digit customs code + the China year + ``I`` + a 9-digit
sequence of that code and year: 18 characters each, as the XSD wants. Partitions and workers
number in one Redis: a script per declaration id keeps the numbers in a hash, so a declaration
decided again (a replay after a crash, a correction) keeps the numbers it got, and the
counters only move for a declaration that has none yet. ``MemoryCustomsNumbers`` is the same
contract in dicts, for ``sandan check`` and tests.

``number_outputs`` puts the numbers on what an engine publishes: the inventory of a verified
verdict and every CEB622/624/626 receipt (the XSD requires ``copNo`` and ``preNo`` there, and
``invtNo`` once given), one round trip for the lot.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.common.clock import CHINA
from services.common.outputs import Output

KEPT_S = 183 * 24 * 3600       # a declaration's numbers outlive its returns window (30 + 45 days after release)
DAY_COUNTER_S = 3 * 24 * 3600  # a preNo counter is only used on its own day
YEAR_COUNTER_S = 400 * 24 * 3600
SEQUENCE_MAX = 999_999_999
NUMBERED_RECEIPTS = frozenset({"CEB622", "CEB624", "CEB626"})
UNKNOWN_CUSTOMS = "0000"  # only for an inventory the reader let through without a 4-char customsCode

# KEYS: the declaration's hash, the day's preNo counter, the code+year's invtNo counter.
# ARGV: date (YYYYMMDD), '1' to verify, invtNo prefix (code + year + 'I'), copNo or '', hash TTL.
_NUMBER = """
local h = KEYS[1]
local pre = redis.call('HGET', h, 'preNo')
if not pre then
  local n = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], %(day)d)
  if n > %(max)d then return redis.error_reply('preNo sequence of ' .. ARGV[1] .. ' exhausted') end
  pre = 'B' .. ARGV[1] .. string.format('%%09d', n)
  redis.call('HSET', h, 'preNo', pre)
end
local invt = redis.call('HGET', h, 'invtNo')
if (not invt) and ARGV[2] == '1' then
  local n = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], %(year)d)
  if n > %(max)d then return redis.error_reply('invtNo sequence of ' .. ARGV[3] .. ' exhausted') end
  invt = ARGV[3] .. string.format('%%09d', n)
  redis.call('HSET', h, 'invtNo', invt)
end
if ARGV[4] ~= '' then redis.call('HSET', h, 'copNo', ARGV[4]) end
local cop = redis.call('HGET', h, 'copNo')
redis.call('EXPIRE', h, tonumber(ARGV[5]))
return {pre, invt or '', cop or ''}
""" % {"day": DAY_COUNTER_S, "year": YEAR_COUNTER_S, "max": SEQUENCE_MAX}


@dataclass(frozen=True)
class NumberRequest:
    decl_id: str                  # ebpCode:orderNo
    at_ms: int                    # when: the China date of a new preNo, the year of a new invtNo
    verify: bool = False          # give an invtNo if it has none
    customs_code: str = UNKNOWN_CUSTOMS
    cop_no: str | None = None     # the verified inventory's own number, for receipts of later documents


@dataclass(frozen=True)
class Numbers:
    pre_no: str
    invt_no: str | None
    cop_no: str | None


class CustomsNumbers(Protocol):
    async def number_many(self, requests: Sequence[NumberRequest]) -> list[Numbers]:
        """Each request's numbers, in order, in one round trip."""


def _date(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, CHINA).strftime("%Y%m%d")


def _invt_prefix(request: NumberRequest) -> str:
    return f"{request.customs_code}{_date(request.at_ms)[:4]}I"


class RedisCustomsNumbers:
    def __init__(self, redis, namespace: str = "sandan:") -> None:
        self._ns = namespace
        self._redis = redis
        self._script = redis.register_script(_NUMBER)

    async def number_many(self, requests):
        if not requests:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for r in requests:
            date, prefix = _date(r.at_ms), _invt_prefix(r)
            await self._script(keys=[f"{self._ns}numbers:{r.decl_id}", f"{self._ns}preno-seq:{date}",
                                     f"{self._ns}invtno-seq:{prefix}"],
                               args=[date, "1" if r.verify else "0", prefix, r.cop_no or "", KEPT_S], client=pipe)
        answers = await pipe.execute()
        return [Numbers(*(_text(v) for v in answer)) for answer in answers]


def _text(value) -> str | None:
    value = value.decode() if isinstance(value, bytes) else value
    return value or None


class MemoryCustomsNumbers:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, str]] = {}
        self._counters: dict[str, int] = {}

    def _next(self, counter: str) -> int:
        n = self._counters[counter] = self._counters.get(counter, 0) + 1
        if n > SEQUENCE_MAX:
            raise OverflowError(f"sequence {counter} exhausted")
        return n

    async def number_many(self, requests):
        answers = []
        for r in requests:
            held = self._held.setdefault(r.decl_id, {})
            if "preNo" not in held:
                date = _date(r.at_ms)
                held["preNo"] = f"B{date}{self._next('pre:' + date):09d}"
            if r.verify and "invtNo" not in held:
                prefix = _invt_prefix(r)
                held["invtNo"] = f"{prefix}{self._next('invt:' + prefix):09d}"
            if r.cop_no:
                held["copNo"] = r.cop_no
            answers.append(Numbers(held["preNo"], held.get("invtNo"), held.get("copNo")))
        return answers


def _decl_id(record: dict) -> str | None:
    ebp, order = (record.get("ebpCode") or "").strip(), (record.get("orderNo") or "").strip()
    return f"{ebp}:{order}" if ebp and order else None


def _customs_code(inventory: dict) -> str:
    code = (inventory.get("customsCode") or "").strip()
    return code if len(code) == 4 else UNKNOWN_CUSTOMS


async def number_outputs(numbers: CustomsNumbers, outputs: Sequence[Output], now_ms: int) -> None:
    """Put the customs numbers on the outputs that carry them (records changed in place)."""
    receipts: list[tuple[str, dict]] = []
    verdicts: list[tuple[str, dict]] = []
    wanted: dict[str, dict] = {}  # decl id -> NumberRequest fields, in order of first need
    seen: set[int] = set()
    for output in outputs:
        rec = output.record
        if id(rec) in seen:
            continue  # verdicts and matched declarations share one record
        seen.add(id(rec))
        if output.schema == "sandan.Receipt" and rec.get("message") in NUMBERED_RECEIPTS:
            decl_id = _decl_id(rec)
            if decl_id is None:
                continue
            wanted.setdefault(decl_id, {})
            receipts.append((decl_id, rec))
        elif output.schema == "sandan.Verdict" and rec.get("status") == "verified" and rec.get("inventory"):
            decl_id = rec["declarationId"]
            want = wanted.setdefault(decl_id, {})
            want.update(verify=True, customs_code=_customs_code(rec["inventory"]))
            if (rec["inventory"].get("copNo") or "").strip():
                want["cop_no"] = rec["inventory"]["copNo"].strip()
            verdicts.append((decl_id, rec))
    if not wanted:
        return
    ids = list(wanted)
    answers = await numbers.number_many([NumberRequest(i, now_ms, **wanted[i]) for i in ids])
    given = dict(zip(ids, answers))
    for decl_id, rec in verdicts:
        got = given[decl_id]
        rec["inventory"] = {**rec["inventory"], "preNo": got.pre_no, "invtNo": got.invt_no}
    for decl_id, rec in receipts:
        got = given[decl_id]
        rec["preNo"] = got.pre_no
        if rec["message"] == "CEB622" or got.invt_no:
            rec["invtNo"] = got.invt_no  # what the sender wrote is not customs' number
        if not (rec.get("copNo") or "").strip():
            # the XSD requires copNo; a document without one is answered with the inventory's,
            # or with its preNo, the one number that surely names it
            rec["copNo"] = got.cop_no or got.pre_no
