"""Fuzzing at scale in `make test` (issue 20): 180,000 inputs across the codec, Submit and the workers.

60,000 seeded mutations per target (``targets``: the CEB XML reader, a Submit item through the
gateway's item handler, a record on any worker input topic through its worker's handling),
about 100 µs each, in process. Every input must end in a fate (accepted, refused with a reason,
dead-lettered with a code, a field and a message); anything raised is a crash. Two more
properties: a document spoiled inside a message leaves the message's other documents exactly as
they were, and a hostile declaration in a tax_guarantee batch changes nothing for the others.

``SANDAN_FUZZ_SEED`` fixes the seed (default: a new one each run, printed); a crash names its
seed, target and input file and the command that replays them. `make fuzz` is the long run.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
from collections import Counter
from decimal import Decimal

import pytest

from services.common import config
from services.common.avro import WireError
from services.common.quota.store import MemoryQuotaStore
from services.gateway.errors import PERMISSION_DENIED, CallError
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.store import MemoryAccountStore
from tests.faults import hostile
from tests.fuzz import inputs, targets

PER_TARGET = 60_000
SEED = int(os.environ.get("SANDAN_FUZZ_SEED") or random.randrange(10**9))
CRASH_DIR = config.PROJECT_ROOT / ".local" / "fuzz" / "crashes"
REPLAY = ".venv/bin/python -m tests.fuzz.run --target {target} {path}"


@pytest.fixture(scope="module", autouse=True)
def submit_codes():
    targets.set_submit_codes(inputs.sender_codes())


@pytest.fixture(autouse=True)
def seed_shown():
    """In every test's captured output, so any failure (an exception too, not only an assert
    that names it) says how to repeat it."""
    print(f"fuzz seed {SEED} (SANDAN_FUZZ_SEED={SEED} repeats this run)")


def keep_crash(target: str, data: bytes) -> str:
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    path = CRASH_DIR / f"{target}-{hashlib.sha1(data).hexdigest()[:12]}"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("target", inputs.TARGETS)
def test_every_fuzzed_input_ends_in_a_fate_never_an_exception(target):
    run = getattr(targets, target)
    mutator = inputs.Mutator(SEED + inputs.TARGETS.index(target))
    fates, crashes = Counter(), []
    for _ in range(PER_TARGET):
        data = mutator.bytes_of(target)
        try:
            fates[run(data)] += 1
        except Exception as exc:  # noqa: BLE001 - the property: nothing escapes; collected and reported
            crashes.append(f"{type(exc).__name__}: {str(exc)[:300]}\n  input: {keep_crash(target, data)}"
                           f"\n  replay: {REPLAY.format(target=target, path=keep_crash(target, data))}")
    print(f"{target}: {sum(fates.values()) + len(crashes)} inputs: {dict(fates.most_common())}")
    assert not crashes, f"seed {SEED}, {len(crashes)} crashes:\n" + "\n".join(crashes[:10])
    assert sum(fates.values()) == PER_TARGET
    assert len(fates) > 1, "every input met the same fate: the mutator reaches nothing"


DOCUMENT = re.compile(rb"<ceb:(Order|Payment|Logistics|Inventory|InvtCancel|InvtRefund)>.*?</ceb:\1>", re.S)
LEAF = re.compile(rb">([^<>]{0,200})</")


def published(done) -> dict[str, dict]:
    return {o.record["guid"]: o.record for o in done.outputs if o.topic.startswith("documents.")}


def test_a_spoiled_document_leaves_the_other_documents_of_its_message_as_they_were():
    rnd = random.Random(SEED)
    messages = [data for name, data in hostile.samples().items() if name.startswith("generated")]
    tried = spoiled = 0
    for _ in range(3000):
        data = rnd.choice(messages)
        code = re.search(rb"<ceb:(CEB\d{3})Message", data).group(1).decode()
        docs = list(DOCUMENT.finditer(data))
        victim = rnd.randrange(len(docs))
        start, end = docs[victim].span()
        leaves = [m.span(1) for m in LEAF.finditer(data, start, end)]
        a, b = rnd.choice(leaves)
        bad = data[:a] + rnd.choice(inputs.TOKENS + [b"-" + data[a:b], data[a:b] * 40]) + data[b:]
        before = targets.submission.examine("CEB_XML", code, data, targets.SUBMIT_CODES, "fuzz")
        tried += 1
        try:
            after = targets.submission.examine("CEB_XML", code, bad, targets.SUBMIT_CODES, "fuzz")
        except CallError as exc:  # the spoiled sender field names someone else: the call is refused, by design
            assert exc.status == PERMISSION_DENIED
            continue
        if any(r.index == targets.submission.WHOLE_MESSAGE for r in after.refused):
            continue  # the spoiled value broke the message itself (e.g. its XML): refused whole, nothing taken
        spoiled += bool(after.refused)
        was, now = published(before), published(after)
        victim_guid = list(was)[victim]
        others = {g: r for g, r in was.items() if g != victim_guid}
        assert {g: now.get(g) for g in others} == others, f"seed {SEED}: another document changed"
        assert all(r.index == victim for r in after.refused), f"seed {SEED}: another document was refused"
    assert spoiled > tried // 10, "the spoiled values were hardly ever refused: the test proves little"


def test_a_hostile_declaration_in_a_batch_changes_nothing_for_the_others():
    rnd = random.Random(SEED)
    mutator = inputs.Mutator(SEED)
    verdict = wire(next(r for topic, _, r in inputs.records() if topic == "declarations.matched"))
    register = dict(next(r for topic, _, r in inputs.records() if topic == "guarantee.commands"),
                    amount=Decimal(10**9))  # room for every good one, whatever the hostile one takes

    def good(i: int) -> dict:
        return dict(verdict, declarationId=f"E:G{i}", orderNo=f"G{i}", taxTotal=Decimal(rnd.randint(1, 400)))

    async def outcomes(batch: list[dict]) -> dict[str, tuple]:
        processor = GuaranteeProcessor(store=MemoryAccountStore(), quota=MemoryQuotaStore(),
                                       thresholds=(Decimal(80), Decimal(95)), expiry_warn_days=30)
        await processor.on_command(register, targets.NOW_MS)
        handled = await processor.on_verdicts(batch, targets.NOW_MS)
        # each good one's answer and its verdict out; ledger entries may differ (one account's seq and balance)
        return {v["declarationId"]: (h.rejected_input, sorted(o.topic for o in h.outputs),
                                     [o.record for o in h.outputs if o.topic.startswith("declarations.")])
                for v, h in zip(batch, handled) if str(v.get("declarationId")).startswith("E:G")}

    async def scenario() -> int:
        hostile_ones = 0
        for _ in range(1000):
            goods = [good(i) for i in range(rnd.randint(1, 4))]
            try:
                bad = wire(mutator._mutated(verdict))
            except (WireError, ValueError, TypeError, OverflowError):
                continue  # no producer could send it
            if str(bad.get("declarationId")).startswith("E:G"):
                continue
            mixed = list(goods)
            mixed.insert(rnd.randrange(len(mixed) + 1), bad)
            assert await outcomes(mixed) == await outcomes(goods), f"seed {SEED}: {bad}"
            hostile_ones += 1
        return hostile_ones

    assert asyncio.run(scenario()) > 500


def wire(record: dict) -> dict:
    """The verdict as tax_guarantee reads it off declarations.matched."""
    return inputs.WIRE.decode(inputs.WIRE.encode("sandan.Verdict", record))[1]
