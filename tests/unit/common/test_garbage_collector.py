"""The garbage collector's settings for a long-running service (services/common/garbage_collector.py)."""
from __future__ import annotations

import gc

import pytest
from prometheus_client import REGISTRY

from services.common import garbage_collector


@pytest.fixture
def collector_restored():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _pauses(generation: str) -> tuple[float, float]:
    """(seconds, collections) observed so far."""
    def value(name: str) -> float:
        return REGISTRY.get_sample_value(f"sandan_gc_pause_seconds_{name}", {"generation": generation}) or 0.0
    return value("sum"), value("count")


def test_tune_sets_the_first_threshold_from_the_setting_and_keeps_the_older_ones(monkeypatch, collector_restored):
    monkeypatch.setenv("SANDAN_GC_THRESHOLD", "12345")
    older = gc.get_threshold()[1:]
    garbage_collector.tune()
    assert gc.get_threshold() == (12345, *older)
    assert gc.get_freeze_count() > 0, "what the service made at its start is left out of every later collection"


def test_a_batch_of_live_records_starts_no_collection_under_the_default(monkeypatch, collector_restored):
    monkeypatch.delenv("SANDAN_GC_THRESHOLD", raising=False)
    garbage_collector.tune()
    before = gc.get_stats()[0]["collections"]
    batch = [{"orderNo": str(i), "items": [i]} for i in range(5_000)]  # a fetch's records, in hand
    assert gc.get_stats()[0]["collections"] == before, "Python's 700 would have collected several times"
    assert len(batch) == 5_000


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_threshold_below_one_is_refused_by_name(monkeypatch, value, collector_restored):
    monkeypatch.setenv("SANDAN_GC_THRESHOLD", value)
    with pytest.raises(SystemExit, match="SANDAN_GC_THRESHOLD"):
        garbage_collector.tune()


def test_every_collection_is_timed_by_generation(collector_restored):
    garbage_collector.watch()
    garbage_collector.watch()  # once per process however often asked
    assert gc.callbacks.count(garbage_collector._timed) == 1
    before = {g: _pauses(g) for g in ("0", "2")}
    gc.collect(0)
    gc.collect(2)
    for generation in ("0", "2"):
        total, count = _pauses(generation)
        assert count == before[generation][1] + 1
        assert total > before[generation][0]
