"""The soak's pure parts (tests/faults/soak.py runs it): its settings, the fault schedule drawn
from a seed, the chunks and which faults fall in each, the p99 and ETA, the report's text and
markdown. Kept apart from the runner, which points the environment at the private stack when
it is imported, so that the unit tests (tests/unit/test_soak_plan.py) can import these.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from tests.faults.table import HEADINGS

# the Pipeline's stream workers (tests/faults/pipeline.py WORKERS; a unit test keeps them equal)
WORKERS = ("order-match", "tax-guarantee", "returns")
KILLED = ("order-match", "tax-guarantee", "returns", "gateway")
KINDS = ("kill", "rebalance", "redis", "kafka")
COLUMNS = ("offered", "declarations", "faults", "in_flight", "lost", "duplicated", "mismatched", "crashes",
           "not_acted_on", "p99_ms", "seconds")
BAD = ("lost", "duplicated", "mismatched", "not_acted_on")  # what makes the soak exit 1 (issue 20)
PROGRESS_EVERY_S = 30.0
SAMPLES = 20  # findings of each kind kept for the report: a broken soak can produce millions


@dataclass(frozen=True)
class Settings:
    declarations: int = 1_000_000
    rate: float = 0.0          # declarations/s offered; 0: measured (half the sustained rate)
    fault_every_s: float = 30.0
    seed: int = 0
    chunk: int = 20_000


def settings(environ: dict[str, str]) -> Settings:
    """The soak's settings from SOAK_* variables (empty means the default; no seed: the clock's)."""
    def get(name: str, default: str) -> str:
        return (environ.get(name) or "").strip() or default

    s = Settings(declarations=int(get("SOAK_DECLARATIONS", "1000000")), rate=float(get("SOAK_RATE", "0")),
                 fault_every_s=float(get("SOAK_FAULT_EVERY", "30")),
                 seed=int(get("SOAK_SEED", str(time.time_ns() % 1_000_000))), chunk=int(get("SOAK_CHUNK", "20000")))
    if s.declarations < 1 or s.chunk < 1 or s.rate < 0 or s.fault_every_s <= 0:
        raise ValueError(f"SOAK_DECLARATIONS and SOAK_CHUNK must be positive, SOAK_RATE not negative and"
                         f" SOAK_FAULT_EVERY over 0: {s}")
    return s


@dataclass(frozen=True)
class Fault:
    at_s: float     # on the soak's load clock
    kind: str       # one of KINDS
    target: str     # a process (kill, rebalance) or a stack service (redis, kafka)
    pause_s: float  # how long it stays away before it is started again

    def label(self) -> str:
        return {"kill": f"kill -9 {self.target}", "rebalance": f"{self.target} left its group and rejoined",
                "redis": "Redis stopped and restarted", "kafka": "Kafka broker stopped and restarted"}[self.kind]


def schedule(seed: int, every_s: float, until_s: float, away_s: float) -> list[Fault]:
    """A fault every ``every_s`` seconds of load (none at 0, when nothing is in flight) until
    ``until_s``, each drawn from ``seed``: a kill -9 of a service's process (either copy of a
    worker) back after 0.2–2 s as in test_crash.py; a worker leaving its group for ``away_s``
    (its session timeout and then some, test_rebalance.py); Redis down 0.5–3 s; the broker 1–4 s
    (test_stack.py)."""
    rnd = random.Random(f"soak:{seed}")
    faults = []
    step = 1
    while step * every_s < until_s:
        kind = rnd.choice(KINDS)
        if kind == "kill":
            service = rnd.choice(KILLED)
            target = service if service == "gateway" else rnd.choice((service, f"{service}-2"))
            pause = rnd.uniform(0.2, 2.0)
        elif kind == "rebalance":
            target, pause = rnd.choice([f"{w}{copy}" for w in WORKERS for copy in ("", "-2")]), away_s
        elif kind == "redis":
            target, pause = "redis", rnd.uniform(0.5, 3.0)
        else:
            target, pause = "kafka", rnd.uniform(1.0, 4.0)
        faults.append(Fault(round(step * every_s, 3), kind, target, round(pause, 3)))
        step += 1
    return faults


def chunks(total: int, size: int) -> list[int]:
    """The declarations of each chunk: ``size`` each, the remainder last."""
    return [size] * (total // size) + ([total % size] if total % size else [])


def window(faults: list[Fault], start_s: float, end_s: float) -> list[Fault]:
    """The faults that fall within one chunk's load period of the soak's load clock."""
    return [f for f in faults if start_s <= f.at_s < end_s]


def p99(latencies: list[int]) -> int:
    """Nearest rank, as the fault table's p99 (audit.p99_through_faults); 0 without any."""
    ordered = sorted(latencies)
    return ordered[-(-len(ordered) * 99 // 100) - 1] if ordered else 0


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far; ``None`` before anything was done."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(total - done, 0) * elapsed_s / done


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def render_lines(row: dict, rate_line: str, clean: bool) -> list[str]:
    """The report as the fault table prints it: the rate line, headings, one row, the verdict."""
    cells = _cells(row)
    width = {k: max(len(HEADINGS[k]), len(cells[k])) for k in COLUMNS}
    return [rate_line,
            "  ".join(HEADINGS[k].rjust(width[k]) for k in COLUMNS),
            "  ".join("-" * width[k] for k in COLUMNS),
            "  ".join(cells[k].rjust(width[k]) for k in COLUMNS),
            f"bad columns ({', '.join(BAD)}) all zero: {'yes' if clean else 'NO'}"]


def render_markdown(row: dict, rate_line: str, clean: bool, settings_: Settings, notes: list[str]) -> str:
    cells = _cells(row)
    head = "| " + " | ".join(HEADINGS[k] for k in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    body = "| " + " | ".join(cells[k] for k in COLUMNS) + " |"
    lines = ["# Soak report", "",
             f"SOAK_DECLARATIONS={settings_.declarations} SOAK_FAULT_EVERY={settings_.fault_every_s:g}"
             f" SOAK_SEED={settings_.seed} SOAK_CHUNK={settings_.chunk}; {rate_line}", "",
             head, rule, body, "",
             f"Bad columns ({', '.join(BAD)}) all zero: **{'yes' if clean else 'NO'}**"]
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _cells(row: dict) -> dict[str, str]:
    cells = {k: str(row[k]) for k in COLUMNS}
    cells["offered"] = f"{row['offered']:.0f}" if row["offered"] else "-"
    cells["seconds"] = f"{row['seconds']:.1f}"
    return cells


CHECKPOINT_VERSION = 1


def checkpoint(s: Settings, rate: float, rate_line: str, prefix: str, done: int, offset_s: float, totals: dict,
               resumes: int, running: str = "") -> dict:
    """What a soak writes after every audited chunk (and, as ``running``, the prefix of the chunk
    it starts), so ``SOAK_RESUME=1`` can go on from the next chunk after an interruption: a chunk
    is audited only whole, so one cut short is run again from its start under a new prefix."""
    return {"version": CHECKPOINT_VERSION, "settings": {f: getattr(s, f) for f in Settings.__dataclass_fields__},
            "rate": rate, "rate_line": rate_line, "prefix": prefix, "done": done, "offset_s": offset_s,
            "totals": totals, "resumes": resumes, "running": running}


def resumed(saved: dict) -> tuple[Settings, dict]:
    """The settings of a saved soak (those of the environment do not apply to it) and the
    checkpoint checked: a file of another version or with a chunk count past the soak's end is
    refused rather than resumed into nonsense."""
    if saved.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"soak checkpoint version {saved.get('version')!r}, this soak writes {CHECKPOINT_VERSION}")
    s = Settings(**saved["settings"])
    if not 0 <= saved["done"] <= len(chunks(s.declarations, s.chunk)) or saved["rate"] <= 0:
        raise ValueError(f"soak checkpoint does not fit its settings: done {saved['done']}, rate {saved['rate']}")
    return s, saved


def chunk_name(index: int, resumes: int) -> str:
    """A chunk's pipeline name: a chunk run again after a resume gets topics and keys of its own."""
    return f"c{index}" if resumes == 0 else f"c{index}r{resumes}"
