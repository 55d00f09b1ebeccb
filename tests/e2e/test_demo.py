"""The main job end to end: `sandan demo` on the real stack, every service as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import config

pytestmark = pytest.mark.integration
# The official XSDs, for the receipts and their signed envelopes (the services never need them).
XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or config.PROJECT_ROOT.parent / "shared" / "ceb" / "xsd")


def test_the_demo_runs_the_whole_pipeline_and_everything_adds_up(stack, tmp_path):
    env = dict(os.environ, SANDAN_LOCAL_DIR=str(tmp_path), SANDAN_LOG_LEVEL="WARNING", CEB_XSD_DIR=str(XSD_DIR))
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
    # every party signed what it submitted under the default requirement, a tampered CEB621 was
    # refused for its digest, and every receipt envelope verified with sandan's published certificate
    signatures = result["signatures"]
    assert signatures["certificates_registered"] == 15
    assert signatures["messages_signed"] > 3 and signatures["signature_refusals"] == 0
    assert signatures["tampered_621"] == "DIGEST_MISMATCH"
    assert signatures["receipt_envelopes"] > 0
    assert signatures["receipt_envelopes_verified"] == signatures["receipt_envelopes"]
    assert signatures["receipt_envelopes_valid"] == signatures["receipt_envelopes"]  # the DxpMsg XSD
    assert result["receipts_xml_valid"] == result["receipts_xml"]
    assert "tampered CEB621 (one character changed after signing): DIGEST_MISMATCH" in done.stdout
