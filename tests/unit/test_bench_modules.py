"""The benchmarks are never run by the tests (speed is not asserted), but they must still
start: every bench module imports, and each runnable one answers --help."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from services.common import config

MODULES = sorted(p.stem for p in (config.PROJECT_ROOT / "bench").glob("*.py") if p.stem != "__init__")
RUNNABLE = ["codec", "engine", "gateway_submit", "kafka_clients", "memory", "pipeline", "redis_claims",
            "signatures"]


@pytest.mark.parametrize("name", MODULES)
def test_every_bench_module_imports(name):
    importlib.import_module(f"bench.{name}")


@pytest.mark.parametrize("name", RUNNABLE)
def test_each_benchmark_answers_help(name):
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], capture_output=True, text=True,
                          cwd=config.PROJECT_ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
