"""The main job end to end: `sandan demo` on the real stack, every service as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from services.common import config

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_whole_pipeline_and_everything_adds_up(stack, tmp_path):
    env = dict(os.environ, SANDAN_LOCAL_DIR=str(tmp_path), SANDAN_LOG_LEVEL="WARNING")
    env.pop("SANDAN_TOPIC_PREFIX", None)  # the demo chooses its own fresh prefix
    done = subprocess.run([sys.executable, "-m", "services.cli", "demo", "--count", "80", "--seed", "7"], env=env,
                          capture_output=True, text=True, cwd=config.PROJECT_ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["declarations"] == 80
    assert result["verified"] + result["rejected"] + result["incomplete"] == 80
    assert result["as_expected"] is True
    assert result["delivered"] == result["cleared"] > 0
    assert result["cleared"] + result["guarantee_refused"] == result["verified"]
    assert result["guarantee_refused"] > 0  # the short guarantee ran out
    assert (result["cancelled"], result["returns_completed"], result["returns_refused"]) == (3, 3, 1)
    assert "from the services' /metrics" in done.stdout
    # customs' payment-data checks (179): one match, one mismatch, one late, one platform that never answers
    assert result["paydata_checks"] == {"PAYDATA_LATE": 1, "PAYDATA_MATCH": 1, "PAYDATA_MISMATCH": 1,
                                        "PAYDATA_MISSING": 2}
