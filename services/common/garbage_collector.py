"""The interpreter's cyclic garbage collector, set for a service that holds records in hand.

A collection stops the whole process: no fetch, no send, no commit. With Python's first
threshold (700 container objects allocated and not yet freed) a worker's batch in hand is
enough to start a young collection, its records survive it and climb to the oldest generation,
and order_match spent 80–190 ms in a full collection every ~5 s at 1,030 declarations/s
(bench/RESULTS.md, session 20). ``SANDAN_GC_THRESHOLD`` raises the first threshold: short-lived
objects are freed by their reference counts before a collection comes, and the cycles that do
build up are still collected, only in larger and rarer steps.
"""
from __future__ import annotations

import gc
import time

from services.common import config

_HISTOGRAM = None
_started: dict[int, float] = {}


def tune() -> None:
    """Once the service has started: what it made so far (modules, settings, the worker and its
    tables) is set aside for good (``gc.freeze``), the first threshold raised, every pause timed."""
    threshold = config.get_int("SANDAN_GC_THRESHOLD")
    if threshold < 1:
        raise SystemExit(f"setting SANDAN_GC_THRESHOLD={threshold} must be 1 or more (Python's own is 700)")
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
    watch()


def histogram():
    """``sandan_gc_pause_seconds{generation}``: how long each garbage collection held the process."""
    global _HISTOGRAM
    if _HISTOGRAM is None:
        from prometheus_client import Histogram
        _HISTOGRAM = Histogram("sandan_gc_pause_seconds", "Duration of a garbage collection (the process stands still)",
                               ["generation"],
                               buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
    return _HISTOGRAM


def _timed(phase: str, info: dict) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
        return
    began = _started.pop(generation, None)
    if began is not None:
        histogram().labels(generation=str(generation)).observe(time.perf_counter() - began)


def watch() -> None:
    """Time every collection from now on (once per process)."""
    histogram()
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)
