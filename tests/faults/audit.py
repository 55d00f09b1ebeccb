"""The audit after a fault scenario: nothing lost, nothing decided twice, every sum right.

Pure: it reads the evidence a scenario gathered (every record on the output topics, what
customs received, the balances and quotas in Redis, what the test itself sent) and lists
findings in three kinds, each a line naming the declaration or document:

- **lost**: a submitted declaration without a verdict; a verified one neither cleared nor
  refused by the guarantee; a cleared one customs never received; a cancellation or return
  request without a final answer;
- **duplicated**: two different verdicts for one declaration (redelivering the same verdict
  is at-least-once and fine; deciding twice is not); cleared *and* refused; one tax bill
  deducted twice (two ledger entries with one id); two final answers to one document;
- **mismatched**: a verdict other than the rules give for the generated data; a guarantee's
  outstanding tax other than the cleared bills minus the cancelled and returned ones; a
  quota other than the taxable values of the buyer's cleared, not cancelled, not returned
  declarations; a document of the load refused by the gateway;
- **not acted on**: a record on a service's input partitions that no output, decision or dead
  letter accounts for (``accounting.py``).

The returns in these scenarios take back every line, so a completed return gives back the
whole bill and the whole taxable value.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

ZERO = Decimal(0)
FINAL = ("399", "100")
CRASH_MARK = "CRITICAL sandan.worker:"  # what a worker logs before it exits 70 (services/common/worker_exit.py)


@dataclass
class Evidence:
    sets: dict                   # declaration -> generated DeclarationSet
    expected: dict[str, str]     # declaration -> status the rules give (incomplete when a document was held back)
    submitted: set[str]          # declarations with at least one document the gateway acknowledged
    verdicts: list[dict]
    cleared: list[dict]
    refused: list[dict]
    receipts: list[dict]
    ledger: list[dict]
    delivered: set[str]          # declarations customs received through the gateway
    after_sales: dict[str, tuple[str, str]]  # CEB623/625 guid -> (cancel | return, declaration)
    accounts: dict[str, Decimal]  # assureCode -> outstanding tax in Redis
    quotas: dict[tuple[str, int], Decimal]  # (buyer key, year) -> total in Redis
    entered_at: dict[str, int]   # declaration -> first document acknowledged (ms)
    left_at: dict[str, int]      # declaration -> refused, rejected or delivered (ms)
    faults: list[tuple[str, int]]
    crashed: list[str]           # exits of processes nobody stopped
    logs: list[Path]
    reconnects: int = 0
    refused_items: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)  # exits asking to be started again (70, worker_exit)
    seconds: float = 0.0
    offered: float = 0.0         # declarations/s the load was offered at (0: paced by time, not rate)
    delivered_at: dict[str, int] = field(default_factory=dict)      # declaration -> first at the customs desk (ms)
    last_document_at: dict[str, int] = field(default_factory=dict)  # declaration -> its last document's broker time
    not_acted_on: dict[str, list[str]] = field(default_factory=dict)  # service -> input records nothing answers
    complete: set[str] = field(default_factory=set)  # declarations every document of which was acknowledged

    def summary(self) -> str:
        """What the scenario went through, for the notes under the fault table."""
        final = {r["documentGuid"]: r["returnStatus"] for r in self.receipts
                 if r["documentGuid"] in self.after_sales and r["returnStatus"] in FINAL}
        done = {kind: sum(1 for g, (k, _) in self.after_sales.items() if k == kind and final.get(g) == "399")
                for kind in ("cancel", "return")}
        return (f"{len(self.submitted)} declarations, {len({v['declarationId'] for v in self.cleared})} cleared, "
                f"{len({v['declarationId'] for v in self.refused})} refused by the guarantee, {done['cancel']} "
                f"cancelled, {done['return']} returned; {self.reconnects} gateway reconnects, "
                f"{sum(self.restarts.values())} worker restarts (handler error or lost output)")


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    not_acted_on: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lost or self.duplicated or self.mismatched or self.crashes or self.not_acted_on)

    def text(self, limit: int = 30) -> str:
        lines = [f"{kind}: {item}" for kind in ("lost", "duplicated", "mismatched", "crashes", "not_acted_on")
                 for item in getattr(self, kind)]
        more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
        return "\n".join(lines[:limit]) + more


def exposed(e: Evidence) -> set[str]:
    """Declarations inside the pipeline at one fault or more: entered before it, not yet out."""
    found = set()
    for _, at in e.faults:
        found |= {d for d, entered in e.entered_at.items() if entered <= at and e.left_at.get(d, at + 1) > at}
    return found


def in_flight(e: Evidence) -> int:
    return len(exposed(e))


def p99_through_faults(e: Evidence) -> int:
    """The 99th percentile (nearest rank) of last document on Kafka (broker time) -> delivered to
    customs, in ms, over the declarations in flight at a fault that reached customs; 0 if none did."""
    latencies = sorted(e.delivered_at[d] - e.last_document_at[d] for d in exposed(e)
                       if d in e.delivered_at and d in e.last_document_at)
    return latencies[-(-len(latencies) * 99 // 100) - 1] if latencies else 0


def sustained_rate(e: Evidence) -> Fraction:
    """Declarations/s a full-speed burst got through: the declarations it completed over the time
    from the first one entering to the last one leaving (refused, rejected or delivered)."""
    through = [d for d in e.complete if d in e.left_at and d in e.entered_at]
    if not through:
        return Fraction(0)
    span_ms = max(e.left_at[d] for d in through) - min(e.entered_at[d] for d in through)
    return Fraction(len(through) * 1000, max(span_ms, 1))


def audit(e: Evidence) -> Findings:
    f = Findings()
    verified = _verdicts(e, f)
    cleared = _guarantee(e, f, verified)
    returned = _after_sales(e, f)
    _balances(e, f, cleared, returned)
    _quotas(e, f, cleared, returned)
    f.mismatched += [f"the gateway refused a document of the load: {item}" for item in e.refused_items]
    f.crashes += e.crashed
    f.not_acted_on += [f"{service}: {item}" for service, items in sorted(e.not_acted_on.items()) for item in items]
    for log in e.logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        f.crashes += [f"{log.name}: {line.strip()[:200]}" for line in text.splitlines() if CRASH_MARK in line]
    return f


def _verdicts(e: Evidence, f: Findings) -> set[str]:
    outcomes: dict[str, set] = defaultdict(set)
    for v in e.verdicts:
        outcomes[v["declarationId"]].add((v["status"], frozenset(x["code"] for x in v["failures"]), v["taxTotal"]))
    for decl in sorted(e.submitted):
        found = outcomes.get(decl, set())
        if not found:
            f.lost.append(f"{decl}: no verdict")
        elif len(found) > 1:
            f.duplicated.append(f"{decl}: {len(found)} different verdicts {sorted(s for s, _, _ in found)}")
        elif next(iter(found))[0] != e.expected[decl]:
            f.mismatched.append(f"{decl}: {next(iter(found))[0]}, the rules give {e.expected[decl]}")
    return {d for d, found in outcomes.items() if any(status == "verified" for status, _, _ in found)}


def _guarantee(e: Evidence, f: Findings, verified: set[str]) -> dict[str, dict]:
    cleared = {v["declarationId"]: v for v in e.cleared}
    refused = {v["declarationId"] for v in e.refused}
    for decl in sorted(verified & e.submitted):
        if decl in cleared and decl in refused:
            f.duplicated.append(f"{decl}: both cleared and refused by the guarantee")
        elif decl not in cleared and decl not in refused:
            f.lost.append(f"{decl}: verified, neither cleared nor refused by the guarantee")
    f.lost += [f"{decl}: cleared, never received by customs" for decl in sorted(cleared.keys() - e.delivered)]
    seqs: dict[str, set[int]] = defaultdict(set)
    for entry in e.ledger:
        seqs[entry["entryId"]].add(entry["seq"])
    f.duplicated += [f"{entry}: applied {len(s)} times (seq {sorted(s)})" for entry, s in sorted(seqs.items())
                     if len(s) > 1]
    return cleared


def _after_sales(e: Evidence, f: Findings) -> set[str]:
    """Declarations whose cancellation or (full) return completed."""
    answers: dict[str, set[str]] = defaultdict(set)
    for r in e.receipts:
        if r["documentGuid"] in e.after_sales and r["returnStatus"] in FINAL:
            answers[r["documentGuid"]].add(r["returnStatus"])
    done = set()
    for guid, (kind, decl) in sorted(e.after_sales.items()):
        final = answers.get(guid, set())
        if not final:
            f.lost.append(f"{kind} {guid} of {decl}: no final answer")
        elif len(final) > 1:
            f.duplicated.append(f"{kind} {guid} of {decl}: answered {sorted(final)}")
        elif final == {"399"}:
            done.add(decl)
    return done


def _balances(e: Evidence, f: Findings, cleared: dict[str, dict], returned: set[str]) -> None:
    want: dict[str, Decimal] = defaultdict(Decimal)
    for decl, v in cleared.items():
        if decl not in returned:
            want[v["assureCode"]] += v["taxTotal"]
    for code in sorted(set(want) | set(e.accounts)):
        if e.accounts.get(code, ZERO) != want.get(code, ZERO):
            f.mismatched.append(f"guarantee {code}: {e.accounts.get(code, ZERO)} outstanding,"
                                f" the cleared bills add up to {want.get(code, ZERO)}")


def _quotas(e: Evidence, f: Findings, cleared: dict[str, dict], returned: set[str]) -> None:
    want: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for decl, v in cleared.items():
        if decl not in returned:
            want[(v["buyerKey"], v["quotaYear"])] += v["taxableValue"]
    for quota in sorted(set(want) | set(e.quotas)):
        if e.quotas.get(quota, ZERO) != want.get(quota, ZERO):
            f.mismatched.append(f"quota {quota[0]}/{quota[1]}: {e.quotas.get(quota, ZERO)} held,"
                                f" the buyer's cleared declarations add up to {want.get(quota, ZERO)}")
