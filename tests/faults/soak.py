"""The soak (`make soak`, issue 20): a million declarations through the whole pipeline with a
random fault every 30 s, audited, the fault table's columns at the end. Not part of CI.

A module (``python -m tests.faults.soak``), not a pytest test: it runs for hours, prints its
progress line to stdout every 30 s as it goes (pytest would capture it), takes its settings
from the environment and `make` variables, and ends with its own report and exit status; as
a test it would also need a marker that every other fault target has to leave out.

It reuses the fault suite unchanged: ``Pipeline``/``Plan`` (gateway, order_match,
tax_guarantee and returns as real processes, two workers of each stream service so one can
leave its group), ``scenario.LONG_OUTAGE`` (no declaration times out because of a fault),
``scenario.offered_rate`` (half the sustained rate when SOAK_RATE is not given), the audit,
the accounting of input records not acted on, and the ``sandan guarantee|quota rebuild``
checks, on the suite's private stack (``stack.env``).

**Chunked.** The harness holds a run's whole load and evidence in memory (every message signed
and queued, every record of every topic decoded for the audit): a 20,000-declaration run peaked
at 1.48 GB RSS (most of it reading the topics back), so a million in one run would need about 70
GB (tests/faults/README.md, "Soak"). The soak therefore runs its declarations in chunks of
``SOAK_CHUNK`` (20,000, the fault suite's load) one after another, each a pipeline with topics
and keys of its own, audited at its end and then forgotten (its topics, Redis keys, load files
and worker tables deleted; its logs kept): memory stays that of one chunk. The faults follow one
schedule on the soak's load clock (the chunks' load periods end to end), so a fault falls every
``SOAK_FAULT_EVERY`` seconds of load whatever chunk is running; the kinds and targets are drawn
from ``SOAK_SEED``. Kafka and Redis are shared by all chunks and keep running (and being
restarted) for the whole soak. Each chunk starts its own service processes, so no service lives
longer than a chunk (about five minutes at 72/s): the soak tests hours of faults on one stack,
not one process's hours.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tests.faults import private_stack

SETTINGS = private_stack.settings()
os.environ.update(SETTINGS)  # before any service setting is read (as conftest.py does for the suite)

from services.common import config  # noqa: E402 - after the private stack's settings are in place
from tests.faults import pipeline as pipeline_mod, scenario  # noqa: E402
from tests.faults.audit import audit, exposed, in_flight  # noqa: E402
from tests.faults.pipeline import WORKERS, Pipeline, Plan  # noqa: E402
from tests.faults.soak_control import hold_the_stack, stop_like_ctrl_c  # noqa: E402
from tests.faults.soak_plan import (BAD, COLUMNS, PROGRESS_EVERY_S, SAMPLES, Fault, Settings, checkpoint,  # noqa: E402
                                    chunk_name, chunks, eta_s, hms, p99, render_lines, render_markdown, resumed,
                                    schedule, settings, window)


@dataclass
class Totals:
    """The soak's figures, summed over its chunks (a row with the fault table's columns)."""
    offered: float = 0.0
    declarations: int = 0
    faults: int = 0
    in_flight: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    crashes: int = 0
    not_acted_on: int = 0
    p99_ms: int = 0       # filled from ``latencies`` by ``row``
    seconds: float = 0.0
    verdicts: int = 0  # declarations with a verdict (for the progress line)
    latencies: list[int] = field(default_factory=list)  # through faults, ms: their p99 is the column
    findings: dict[str, list[str]] = field(default_factory=dict)  # the first SAMPLES of each kind
    notes: list[str] = field(default_factory=list)  # one per chunk: evidence.summary()

    def row(self) -> dict:
        return {name: getattr(self, name) for name in COLUMNS} | {"p99_ms": p99(self.latencies),
                                                                  "seconds": round(self.seconds, 1)}

    def clean(self) -> bool:
        return all(getattr(self, name) == 0 for name in BAD)


def report_json(row: dict, rate_line: str, clean: bool, s: Settings, totals: Totals, complete: bool,
                notes: list[str], resumes: int) -> dict:
    return {"settings": asdict(s), "rate": rate_line, "row": row, "clean": clean, "complete": complete,
            "resumes": resumes, "findings": totals.findings, "notes": notes}


class Progress(threading.Thread):
    """Prints the progress line every 30 s from its own thread, so the asyncio load is left alone.
    It only reads what the running chunk's submitter and tracker hold (``Pipeline.live``)."""

    def __init__(self, total: int, totals: Totals) -> None:
        super().__init__(daemon=True)
        self.total, self.totals = total, totals
        self.started = time.monotonic()
        self.current: Pipeline | None = None
        self.chunk = ""
        self.faults = 0   # injected so far (the chunks' own counts arrive only at their ends)
        self.stopped = threading.Event()
        # a chunk's figures move from its live pipeline to the totals under this, so no line counts them twice
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopped.wait(PROGRESS_EVERY_S):
            print(self.line(), flush=True)

    def line(self) -> str:
        with self.lock:
            submitted, verdicts = self.totals.declarations, self.totals.verdicts
            live = self.current.live if self.current is not None else None
            if live is not None:
                load, tracker, decl_of = live
                submitted += len({decl_of[g] for g in list(load.acked) if g in decl_of})
                verdicts += len(tracker.status)
        elapsed = time.monotonic() - self.started
        return (f"[soak] {self.chunk}: submitted {submitted}/{self.total}, verdicts {verdicts}, faults {self.faults},"
                f" elapsed {hms(elapsed)}, ETA {hms(eta_s(submitted, self.total, elapsed))}")


def run_chunk(index: int, count: int, s: Settings, rate: float, offset_s: float, faults: list[Fault],
              private, prefix: str, progress: Progress, totals: Totals, chunk: str,
              started: Callable[[str], None]) -> None:
    began = time.monotonic()
    plan = Plan(count=count, seed=s.seed * 1000 + index, rate=rate, workers={name: 2 for name in WORKERS},
                **scenario.LONG_OUTAGE)
    p = Pipeline(chunk, prefix, private.runs_dir(), plan)
    started(p.prefix)
    mine = window(faults, offset_s, offset_s + plan.duration_s)

    async def inject(pipe: Pipeline) -> None:
        started = time.monotonic()
        for fault in mine:
            await asyncio.sleep(max(fault.at_s - offset_s - (time.monotonic() - started), 0))
            pipe.faults.record(fault.label())
            progress.faults += 1
            if fault.kind in ("kill", "rebalance"):
                (pipe.services.kill if fault.kind == "kill" else pipe.services.stop)(fault.target)
                await asyncio.sleep(fault.pause_s)
                pipe.services.start(fault.target)
            else:
                await asyncio.to_thread(private.restart, fault.kind, fault.pause_s)

    progress.current = p
    evidence = asyncio.run(p.run(inject))
    findings = audit(evidence)
    if len(evidence.submitted) < count:  # the audit starts from what was submitted: a shortfall would go unseen
        findings.lost.append(f"{count - len(evidence.submitted)} of the chunk's {count} declarations never"
                             f" acknowledged by the gateway")
    for args in scenario.REBUILDS:
        code, out = p.sandan(*args)
        if code != 0:
            findings.mismatched.append(f"`sandan {' '.join(args)}` exit {code}: {out.strip()[-800:]}")
    with progress.lock:
        totals.declarations += len(evidence.submitted)
        totals.verdicts += len({v["declarationId"] for v in evidence.verdicts})
        progress.current = None
    totals.faults += len(evidence.faults)
    totals.in_flight += in_flight(evidence)
    totals.latencies += [evidence.delivered_at[d] - evidence.last_document_at[d] for d in exposed(evidence)
                         if d in evidence.delivered_at and d in evidence.last_document_at]
    for kind in ("lost", "duplicated", "mismatched", "crashes", "not_acted_on"):
        items = getattr(findings, kind)
        setattr(totals, kind, getattr(totals, kind) + len(items))
        kept = totals.findings.setdefault(kind, [])
        kept += [f"chunk {index}: {item}" for item in items[:SAMPLES - len(kept)]]
    totals.notes.append(f"chunk {index} ({p.prefix.rstrip('-')}): {evidence.summary()}; faults:"
                        f" {', '.join(what for what, _ in evidence.faults) or 'none'}")
    print(f"[soak] chunk {index} audited: {len(evidence.submitted)} declarations, {len(evidence.faults)} faults,"
          f" lost {len(findings.lost)}, duplicated {len(findings.duplicated)}, mismatched {len(findings.mismatched)},"
          f" not acted on {len(findings.not_acted_on)}, crashes {len(findings.crashes)}", flush=True)
    if not findings:  # a failed chunk keeps its topics and keys to be looked at; its logs stay either way
        from services.tools import runs
        runs.forget(p.prefix, p.run_dir)
    forget_load(private)
    del evidence, findings
    gc.collect()
    totals.seconds += time.monotonic() - began  # the chunk's whole time: its start, load, settle, audit, clean-up


def code_version() -> str:
    """The commit the soak runs (a soak resumed later may run newer code: the report says so)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10,
                              cwd=config.PROJECT_ROOT, check=False)
    except OSError:
        return "an unknown commit (no git)"
    return f"commit {done.stdout.strip()}" if done.returncode == 0 else "an unknown commit (not a git checkout)"


def forget_load(private) -> None:
    """What the suite keeps for a whole session (the signed load, in memory and on disk, and every
    run's documents for the log scans of test_security.py) would pile up chunk after chunk."""
    shutil.rmtree(private.runs_dir() / "loads", ignore_errors=True)
    pipeline_mod._LOADS.clear()
    pipeline_mod.RUNS.clear()


def main() -> int:
    private = private_stack.PrivateStack(SETTINGS)
    lock = hold_the_stack(private.local_dir)
    if lock is None:
        return 2
    stop_like_ctrl_c()
    state_path = private.local_dir / "soak-state.json"
    resume = (os.environ.get("SOAK_RESUME") or "").strip() in ("1", "yes", "true")
    if resume:
        if not state_path.exists():
            print(f"[soak] SOAK_RESUME=1 but there is no soak to resume ({state_path} not found)", file=sys.stderr)
            return 2
        s, saved = resumed(json.loads(state_path.read_text()))
        print(f"[soak] resuming the soak of SOAK_SEED={s.seed} after {saved['done']} audited chunks (its own"
              f" settings; SOAK_* of the environment do not apply to it)", flush=True)
    else:
        s, saved = settings(dict(os.environ)), None
    before = private.running()
    if not before:  # as the suite does: an empty broker restarts in seconds, one full of old runs does not
        private.reset()
        if saved is None:  # a resumed soak keeps the logs of its audited chunks
            shutil.rmtree(private.runs_dir(), ignore_errors=True)
    private.up()
    if saved is None:
        prefix, totals, resumes, done = f"soak{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}-", Totals(), 0, 0
        totals.notes.append(f"started on {code_version()}")
    else:
        prefix, resumes, done = saved["prefix"], saved["resumes"] + 1, saved["done"]
        totals = Totals(**saved["totals"])
        totals.notes.append(f"resumed after chunk {done} (resume {resumes}) on {code_version()}: a chunk cut short"
                            f" is run again whole")
        if saved["running"]:  # the chunk cut short: its topics and keys would only take room
            from services.tools import runs
            runs.forget(saved["running"])
    progress = Progress(s.declarations, totals)
    out_dir = private.local_dir
    complete = False
    rate_line = ""
    progress.start()
    try:
        if saved is not None:
            rate, rate_line = saved["rate"], saved["rate_line"]
        elif s.rate:
            rate, rate_line = s.rate, f"offered {s.rate:g} declarations/s (SOAK_RATE, not measured)"
        else:
            progress.chunk = "measuring the sustained rate"
            rate = scenario.offered_rate(private, prefix)
            rate_line = scenario.TABLE.rate.replace("to every scenario at load", "to the soak")
            forget_load(private)  # the burst's 20,000 declarations, generated and signed: the chunks have their own
            from services.tools import runs
            runs.forget(f"{prefix}capacity-", private.runs_dir() / f"{prefix}capacity")  # nothing to audit there
        totals.offered = rate
        sizes = chunks(s.declarations, s.chunk)
        away_s = config.get_int("SANDAN_SESSION_TIMEOUT") + 4  # the group rebalances without it (test_rebalance)
        faults = schedule(s.seed, s.fault_every_s, s.declarations / rate, away_s)
        print(f"[soak] SOAK_SEED={s.seed}: {s.declarations} declarations in {len(sizes)} chunks of up to {s.chunk}"
              f" at {rate:g}/s, {len(faults)} faults planned (one every {s.fault_every_s:g} s of load);"
              f" {rate_line}", flush=True)
        offset = saved["offset_s"] if saved is not None else 0.0

        def save(running: str = "") -> None:
            state = checkpoint(s, rate, rate_line, prefix, done, offset, asdict(totals), resumes, running)
            partial = state_path.with_suffix(".json.part")  # renamed over the last one: never half written
            partial.write_text(json.dumps(state) + "\n")
            partial.replace(state_path)

        out_dir.mkdir(parents=True, exist_ok=True)
        save()
        for index, count in enumerate(sizes, 1):
            if index <= done:
                continue
            progress.chunk = f"chunk {index}/{len(sizes)}"
            run_chunk(index, count, s, rate, offset, faults, private, prefix, progress, totals,
                      chunk_name(index, resumes), save)
            offset += count / rate
            done = index
            save()
        complete = True
    finally:
        progress.stopped.set()
        row = totals.row()
        clean = totals.clean() and complete
        notes = list(totals.notes)
        if not complete:
            notes.append(f"the soak did not run to the end (interrupted or a harness error): the figures are those"
                         f" of the {done} chunks audited so far; SOAK_RESUME=1 make soak goes on from chunk {done + 1}")
        lines = render_lines(row, rate_line, clean)
        print("\n".join(["", f"sandan soak report (SOAK_SEED={s.seed})", *lines]), flush=True)
        for kind, items in totals.findings.items():
            for item in items:
                print(f"{kind}: {item}")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "soak-report.json").write_text(
            json.dumps(report_json(row, rate_line, clean, s, totals, complete, notes, resumes), indent=2) + "\n")
        (out_dir / "soak-report.md").write_text(render_markdown(row, rate_line, clean, s, notes))
        print(f"written: {out_dir / 'soak-report.json'}, {out_dir / 'soak-report.md'}")
        started = sorted(private.running() - before)
        if started:
            private.down(*started)
    return 0 if clean else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the report and the checkpoint are written by then (main's finally)
        print("[soak] interrupted: SOAK_RESUME=1 make soak goes on from the next chunk", file=sys.stderr)
        sys.exit(130)
