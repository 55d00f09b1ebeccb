"""The stream and `sandan check` give the same verdict per declaration on one generated set
with every refusal kind both can produce (DOMAIN §2a; issue 14, "Done when")."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from services.cli import publish
from services.common import kafka_io
from services.common.ceb.writer import write_message
from services.common.config import PROJECT_ROOT
from services.common.documents import kind_of
from services.tools.generator import generate, with_refusals
from services.order_match.decide import declaration_id

from .workers import Worker, read_records, wait_for_verdicts, with_prefix, worker_env

pytestmark = pytest.mark.integration
CEB = "{http://www.chinaport.gov.cn/ceb}"
MESSAGES = (("order", "CEB311"), ("payment", "CEB411"), ("logistics", "CEB511"), ("inventory", "CEB621"))


def _write(sets, folder: Path, later=()) -> None:
    """One message per kind, documents in the order each set sends them (and ``later``, the
    phase-1 sets' documents sent once they are decided); the payments of ``xml_break`` sets
    get an amount the reader refuses."""
    folder.mkdir(parents=True)
    broken = {s.payment["guid"] for s in sets if s.xml_break == "payment"}
    for kind, code in MESSAGES:
        docs = [d for s in sets for d in s.documents if kind_of(d) == kind] + [d for d in later if kind_of(d) == kind]
        if not docs:
            continue
        root = etree.fromstring(write_message(code, docs))
        for head in root.iter(f"{CEB}PaymentHead"):
            if head.findtext(f"{CEB}guid") in broken:
                head.find(f"{CEB}amountPaid").text = "12.3x"
        (folder / f"{code}.xml").write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _outcome(status: str, codes, tax) -> tuple:
    return status, frozenset(codes), tax if status != "incomplete" else None


def test_the_stream_and_sandan_check_agree_on_every_refusal_kind(stack, topic_prefix, tmp_path):
    prefix = f"{topic_prefix}same-"
    sets = with_refusals(generate(24, buyers=24, fault_share="0.2", seed=1414))
    _write([s for s in sets if s.phase == 1], tmp_path / "phase1")
    _write([s for s in sets if s.phase == 2], tmp_path / "phase2", later=[d for s in sets for d in s.later])
    ids = {declaration_id(s.order["ebpCode"], s.order["orderNo"]): s for s in sets}

    checked = subprocess.run([sys.executable, "-m", "services.cli", "check", str(tmp_path)], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stderr
    offline = {}
    refused = defaultdict(list)
    for line in map(json.loads, checked.stdout.splitlines()):
        decl = declaration_id(line["ebpCode"], line["orderNo"])
        offline[decl] = _outcome(line["status"], (f["code"] for f in line["failures"]),
                                 Decimal(line["tax"]["total"]) if line["tax"] else None)
        refused[decl] += [r["code"] for r in line["refused"]]
    assert set(offline) == set(ids)
    for decl, s in ids.items():
        assert offline[decl][:2] == (s.expected_status, s.expected_codes), decl
        reader = 1 if s.xml_break else 0  # the reader's field refusal, whatever code it gives
        assert len(refused[decl]) == len(s.expected_refused) + reader, decl
        assert set(s.expected_refused) <= set(refused[decl]), decl

    with with_prefix(prefix):
        kafka_io.create_topics()
        worker = Worker("order-match", worker_env(prefix, tmp_path, SANDAN_MATCH_TIMEOUT="20"),
                        tmp_path / "worker.log").start()
        try:
            assert publish.run(argparse.Namespace(paths=[str(tmp_path / "phase1")])) == 0
            first = {d for d, s in ids.items() if s.phase == 1}
            wait_for_verdicts(first, timeout_s=150, workers=[worker])
            assert publish.run(argparse.Namespace(paths=[str(tmp_path / "phase2")])) == 0
            verdicts = wait_for_verdicts(set(ids), timeout_s=150, workers=[worker])
            locked = {d["guid"] for s in sets for d in s.later}  # their refusals come after the verdicts
            deadline = time.monotonic() + 60
            while not locked <= {r["documentGuid"] for r in read_records("receipts")}:
                assert time.monotonic() < deadline, "no receipt for the changes sent after verification"
                time.sleep(0.5)
            time.sleep(2)
            verdicts = read_records("declarations.verdicts")
            receipts = read_records("receipts")
        finally:
            worker.stop()
    stream = {}
    for v in verdicts:
        assert v["declarationId"] not in stream, "two verdicts for one declaration"
        stream[v["declarationId"]] = _outcome(v["status"], (f["code"] for f in v["failures"]),
                                              v["taxTotal"])
    assert stream == offline
    refusal_codes = {f["code"] for r in receipts for f in r["failures"] if r["returnStatus"] != "120"}
    assert {"DUPLICATE", "APP_TIME", "SUPERSEDED", "WAYBILL_REUSED", "LOCKED"} <= refusal_codes
