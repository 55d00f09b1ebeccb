"""Counting fuzz inputs and their fates, for the fault table.

Each fuzz module keeps a ``Tally``: inputs tried by strategy, how they ended (accepted,
refused), and the crashes (any exception that is not a clear refusal). A module-scoped
fixture turns it into a table row when the module's tests are done.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings

from tests.faults.table import TABLE, Row

# Records the gateway accepted during its fuzz, for the worker fuzz to feed to the workers.
ACCEPTED_BY_GATEWAY: list = []
_FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def budget(examples: int) -> settings:
    """A fixed number of examples: fuzzing is part of CI, so it must end (the session seed repeats a run)."""
    return settings(_FUZZ, max_examples=examples)


@dataclass
class Tally:
    name: str
    tried: Counter = field(default_factory=Counter)
    fates: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)

    def count(self, strategy: str, fate: str) -> None:
        self.tried[strategy] += 1
        self.fates[fate] += 1

    def crash(self, strategy: str, what: str) -> None:
        self.tried[strategy] += 1
        self.crashes.append(f"{strategy}: {what}"[:300])

    def row(self, seconds: float) -> Row:
        TABLE.notes.append(f"{self.name}: {sum(self.tried.values())} inputs ("
                           + ", ".join(f"{k} {v}" for k, v in sorted(self.tried.items())) + "); "
                           + ", ".join(f"{k} {v}" for k, v in sorted(self.fates.items())))
        return TABLE.add(Row(self.name, fuzzed=sum(self.tried.values()), crashes=len(self.crashes),
                             seconds=round(seconds, 1)))
