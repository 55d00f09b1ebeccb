"""The soak's pure parts (tests/faults/soak_plan.py): settings from the environment, the fault
schedule drawn from a seed, chunks and their faults, p99 and ETA, the report's text and markdown."""
from __future__ import annotations

import pytest

from tests.faults import soak_plan
from tests.faults.soak_plan import (COLUMNS, KINDS, Settings, chunks, eta_s, hms, p99, render_lines, render_markdown,
                                    schedule, settings, window)
from tests.faults.table import HEADINGS


def test_settings_default_to_a_million_at_a_measured_rate_with_a_fault_every_30_s():
    s = settings({"SOAK_SEED": "7", "SOAK_RATE": ""})
    assert s == Settings(declarations=1_000_000, rate=0.0, fault_every_s=30.0, seed=7, chunk=20_000)


def test_settings_are_read_from_the_environment_and_checked():
    s = settings({"SOAK_DECLARATIONS": "3000", "SOAK_RATE": "100", "SOAK_FAULT_EVERY": "10", "SOAK_SEED": "4",
                  "SOAK_CHUNK": "1000"})
    assert (s.declarations, s.rate, s.fault_every_s, s.seed, s.chunk) == (3000, 100.0, 10.0, 4, 1000)
    assert settings({}).seed >= 0  # no seed: one from the clock, printed so the run can be replayed
    with pytest.raises(ValueError):
        settings({"SOAK_DECLARATIONS": "0"})
    with pytest.raises(ValueError):
        settings({"SOAK_FAULT_EVERY": "0"})


def test_the_schedule_is_the_same_for_a_seed_and_differs_between_seeds():
    first = schedule(42, 30, 3600, 14)
    assert first == schedule(42, 30, 3600, 14)
    assert first != schedule(43, 30, 3600, 14)


def test_a_fault_every_interval_none_at_the_start_or_past_the_end():
    faults = schedule(1, 30, 125, 14)
    assert [f.at_s for f in faults] == [30, 60, 90, 120]
    assert schedule(1, 30, 30, 14) == []  # the load is over when the first would fall


def test_faults_are_drawn_from_the_four_kinds_with_their_targets_and_pauses():
    faults = schedule(5, 1, 2000, 14)
    assert {f.kind for f in faults} == set(KINDS)
    for f in faults:
        if f.kind == "kill":
            assert f.target in {"gateway", *soak_plan.WORKERS, *(f"{w}-2" for w in soak_plan.WORKERS)}
            assert 0.2 <= f.pause_s <= 2.0
        elif f.kind == "rebalance":
            assert f.target in {*soak_plan.WORKERS, *(f"{w}-2" for w in soak_plan.WORKERS)} and f.pause_s == 14
        elif f.kind == "redis":
            assert f.target == "redis" and 0.5 <= f.pause_s <= 3.0
        else:
            assert f.target == "kafka" and 1.0 <= f.pause_s <= 4.0
    # every service is killed at some point, the gateway included
    assert {f.target.removesuffix("-2") for f in faults if f.kind == "kill"} == set(soak_plan.KILLED)
    assert faults[0].label()


def test_the_workers_are_those_of_the_pipeline():
    from tests.faults.pipeline import WORKERS
    assert soak_plan.WORKERS == WORKERS


def test_chunks_cover_the_declarations_and_each_fault_falls_in_one_chunk():
    assert chunks(1_000_000, 20_000) == [20_000] * 50
    assert chunks(3000, 20_000) == [3000]
    assert chunks(45_000, 20_000) == [20_000, 20_000, 5000]
    faults = schedule(3, 10, 450, 14)
    bounds = [(0, 200), (200, 400), (400, 450)]
    assert sum((window(faults, a, b) for a, b in bounds), []) == faults
    assert [f.at_s for f in window(faults, 200, 400)] == [200 + 10 * i for i in range(20)]


def test_p99_is_the_nearest_rank():
    assert p99([]) == 0
    assert p99([5]) == 5
    assert p99(list(range(1, 101))) == 99
    assert p99(list(range(200, 0, -1))) == 198


def test_eta_at_the_pace_so_far():
    assert eta_s(0, 100, 10) is None
    assert eta_s(25, 100, 10) == 30
    assert eta_s(100, 100, 50) == 0
    assert hms(3725.9) == "1h02m05s" and hms(None) == "?"


ROW = {"offered": 100.0, "declarations": 3000, "faults": 2, "in_flight": 150, "lost": 0, "duplicated": 0,
       "mismatched": 0, "crashes": 0, "not_acted_on": 0, "p99_ms": 2345, "seconds": 71.26}


def test_the_report_has_the_fault_tables_columns_and_a_verdict():
    lines = render_lines(ROW, "offered 100 declarations/s (SOAK_RATE, not measured)", clean=True)
    assert lines[0].startswith("offered 100")
    assert lines[1].split("  ")[0].strip() == HEADINGS["offered"]
    assert all(HEADINGS[k] in lines[1] for k in COLUMNS)
    assert lines[3].split() == ["100", "3000", "2", "150", "0", "0", "0", "0", "0", "2345", "71.3"]
    assert lines[-1].endswith("all zero: yes")
    assert render_lines(dict(ROW, lost=1), "", clean=False)[-1].endswith("all zero: NO")


def test_the_markdown_report_is_a_table_with_the_settings_and_notes():
    text = render_markdown(ROW, "offered 100/s", True, Settings(3000, 100.0, 10.0, 4, 20_000), ["chunk 1: fine"])
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| offered"))
    assert lines[head + 1] == "|" + "|".join("---:" for _ in COLUMNS) + "|"
    assert lines[head + 2] == "| 100 | 3000 | 2 | 150 | 0 | 0 | 0 | 0 | 0 | 2345 | 71.3 |"
    assert "SOAK_SEED=4" in text and "**yes**" in text and "- chunk 1: fine" in text


def test_a_checkpoint_round_trips_through_json_and_keeps_the_soaks_settings():
    import json
    s = Settings(100_000, 95.0, 30.0, 11, 20_000)
    saved = json.loads(json.dumps(soak_plan.checkpoint(s, 95.0, "offered 95/s", "soakX-", 2, 421.05,
                                                       {"declarations": 40_000}, 1, running="soakX-c3r1-")))
    back, state = soak_plan.resumed(saved)
    assert back == s
    assert (state["done"], state["offset_s"], state["totals"], state["resumes"], state["running"]) == \
        (2, 421.05, {"declarations": 40_000}, 1, "soakX-c3r1-")


def test_a_checkpoint_that_does_not_fit_is_refused():
    s = Settings(40_000, 95.0, 30.0, 11, 20_000)
    good = soak_plan.checkpoint(s, 95.0, "", "p-", 2, 0.0, {}, 0)
    assert soak_plan.resumed(good)[1]["done"] == 2
    with pytest.raises(ValueError):
        soak_plan.resumed(dict(good, done=3))  # two chunks only
    with pytest.raises(ValueError):
        soak_plan.resumed(dict(good, version=0))
    with pytest.raises(ValueError):
        soak_plan.resumed(dict(good, rate=0))


def test_a_chunk_run_again_after_a_resume_has_a_name_of_its_own():
    assert soak_plan.chunk_name(3, 0) == "c3"
    assert soak_plan.chunk_name(3, 1) == "c3r1" != soak_plan.chunk_name(3, 2)
