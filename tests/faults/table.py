"""The fault report `make test-faults` ends with: one row per scenario, a total, a verdict.

Tests add their row before they assert, so a failing scenario still shows its figures.
Scenarios at load state their offered rate; the rate the machine sustained, measured once
at the start of the session, is the table's first line.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

BAD = ("lost", "duplicated", "mismatched", "not_acted_on", "crashes")
HEADINGS = {"scenario": "scenario", "offered": "offered /s", "declarations": "declarations",
            "faults": "faults injected", "in_flight": "in flight at the fault", "p99_ms": "p99 through the fault ms",
            "lost": "lost", "duplicated": "duplicated", "mismatched": "mismatched",
            "not_acted_on": "input records not acted on", "fuzzed": "inputs fuzzed", "crashes": "crashes",
            "seconds": "seconds"}
# summed in the total row; the others are per scenario (a rate) or the worst of them (p99)
_SUMMED = ("declarations", "faults", "in_flight", "lost", "duplicated", "mismatched", "not_acted_on", "fuzzed",
           "crashes", "seconds")


@dataclass
class Row:
    scenario: str
    faults: int = 0
    in_flight: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0   # balances or quotas off their ledger, verdicts other than the rules give
    fuzzed: int = 0
    crashes: int = 0      # processes or agents that died without being killed, uncaught errors
    seconds: float = 0.0
    offered: float = 0.0  # declarations/s offered (0: not a load scenario)
    declarations: int = 0  # declarations the gateway acknowledged
    p99_ms: int = 0       # last document on Kafka -> delivered to customs, of those in flight at a fault
    not_acted_on: int = 0  # input records no output, decision or dead letter accounts for (accounting.py)


class FaultTable:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.rate: str = ""   # the sustained rate measured at the start, and what the scenarios are offered

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def total(self) -> Row:
        total = Row("total")
        for row in self.rows:
            for name in _SUMMED:
                setattr(total, name, getattr(total, name) + getattr(row, name))
            total.p99_ms = max(total.p99_ms, row.p99_ms)
        total.seconds = round(total.seconds, 1)
        return total

    def clean(self) -> bool:
        total = self.total()
        return all(getattr(total, name) == 0 for name in BAD)

    def lines(self) -> list[str]:
        rows = [HEADINGS] + [_cells(r) for r in self.rows + [self.total()]]
        width = {k: max(len(str(r[k])) for r in rows) for k in HEADINGS}
        out = [self.rate] if self.rate else []
        for i, r in enumerate(rows):
            cells = [str(r[k]).ljust(width[k]) if k == "scenario" else str(r[k]).rjust(width[k]) for k in HEADINGS]
            out.append("  ".join(cells))
            if i == 0 or i == len(rows) - 2:
                out.append("  ".join("-" * width[k] for k in HEADINGS))
        verdict = "yes" if self.clean() else "NO"
        out.append(f"bad columns ({', '.join(BAD)}) all zero: {verdict}")
        return out + self.notes

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"rate": self.rate, "rows": [asdict(r) for r in self.rows],
                                    "total": asdict(self.total()), "clean": self.clean(), "notes": self.notes},
                                   indent=2) + "\n")


def _cells(row: Row) -> dict:
    values = asdict(row)
    values["seconds"] = f"{row.seconds:.1f}"
    values["offered"] = f"{row.offered:.0f}" if row.offered else "-"
    return values


TABLE = FaultTable()
