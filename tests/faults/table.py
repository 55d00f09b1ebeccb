"""The fault report `make test-faults` ends with: one row per scenario, a total, a verdict.

Tests add their row before they assert, so a failing scenario still shows its figures.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

BAD = ("lost", "duplicated", "mismatched", "crashes")
HEADINGS = {"scenario": "scenario", "faults": "faults injected", "in_flight": "declarations in flight",
            "lost": "lost", "duplicated": "duplicated", "mismatched": "mismatched", "fuzzed": "inputs fuzzed",
            "crashes": "crashes", "seconds": "seconds"}


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


class FaultTable:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def total(self) -> Row:
        total = Row("total")
        for row in self.rows:
            for f in fields(Row)[1:]:
                setattr(total, f.name, getattr(total, f.name) + getattr(row, f.name))
        total.seconds = round(total.seconds, 1)
        return total

    def clean(self) -> bool:
        total = self.total()
        return all(getattr(total, name) == 0 for name in BAD)

    def lines(self) -> list[str]:
        rows = [HEADINGS] + [_cells(r) for r in self.rows + [self.total()]]
        width = {k: max(len(str(r[k])) for r in rows) for k in HEADINGS}
        out = []
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
        path.write_text(json.dumps({"rows": [asdict(r) for r in self.rows], "total": asdict(self.total()),
                                    "clean": self.clean(), "notes": self.notes}, indent=2) + "\n")


def _cells(row: Row) -> dict:
    values = asdict(row)
    values["seconds"] = f"{row.seconds:.1f}"
    return values


TABLE = FaultTable()
