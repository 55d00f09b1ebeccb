"""`make demo`: the main job end to end on the local Kafka and Redis.

Generates a realistic mix of declarations (mostly good, a share with each kind of broken
rule, some missing a document, some documents delivered twice), writes them as CEB XML,
sends them in, runs the services as real processes, waits for every declaration's verdict
and prints a report whose last line is one JSON object.
"""
from __future__ import annotations

import copy
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from services.common import config, kafka_io, topics
from services.common.avro import codec
from services.common.ceb.reader import parse_file
from services.common.ceb.writer import write_message
from services.common.documents import MESSAGE_OF_KIND, kind_of
from services.common.generator import generate
from services.common.ingest import document_outputs, encode
from services.demo.processes import ServiceProcess, service_env
from services.demo.progress import Progress
from services.order_match.decide import declaration_id


@dataclass
class DemoPlan:
    count: int = 400
    fault_share: Decimal = Decimal("0.1")
    incomplete_share: Decimal = Decimal("0.03")
    duplicate_share: Decimal = Decimal("0.1")
    seed: int = 2026
    match_timeout_s: int = 15
    wait_s: int = 300


def _share(total: int, share: Decimal) -> int:
    return int(Decimal(total) * share)


def build_documents(plan: DemoPlan):
    """The sets, the documents to send (some dropped, some twice, shuffled) and the expected statuses."""
    rnd = random.Random(plan.seed)
    sets = generate(plan.count, buyers=max(plan.count // 3, 1), fault_share=plan.fault_share, seed=plan.seed)
    incomplete = set(rnd.sample(range(plan.count), _share(plan.count, plan.incomplete_share)))
    docs, expected = [], {}
    for i, s in enumerate(sets):
        chosen = list(s.documents)
        if i in incomplete:
            chosen.pop(rnd.randrange(4))
        expected[declaration_id(s.order["ebpCode"], s.order["orderNo"])] = \
            "incomplete" if i in incomplete else s.expected_status
        docs += [copy.deepcopy(d) for d in chosen]
    docs += [copy.deepcopy(rnd.choice(docs)) for _ in range(_share(len(docs), plan.duplicate_share))]
    rnd.shuffle(docs)
    return sets, docs, expected


def write_inbox(docs: list[dict], inbox: Path) -> list[Path]:
    """CEB XML messages in arrival order: each run of 100 arrivals becomes one message per kind."""
    inbox.mkdir(parents=True, exist_ok=True)
    files = []
    for start in range(0, len(docs), 100):
        by_kind: dict[str, list[dict]] = {}
        for doc in docs[start:start + 100]:
            by_kind.setdefault(kind_of(doc), []).append(doc)
        for kind, batch in by_kind.items():
            code = MESSAGE_OF_KIND[kind]
            path = inbox / f"{len(files) + 1:05d}_{code}.xml"
            path.write_bytes(write_message(code, batch))
            files.append(path)
    return files


def send_files(files: list[Path]) -> int:
    """Publish CEB XML files to the document topics (the gateway's Submit does the same)."""
    wire, producer, sent = codec(), kafka_io.producer(), 0
    for path in files:
        for topic, key, value in encode(document_outputs(parse_file(path, lenient=True)), wire):
            producer.send(topic, key=key, value=value)
            sent += 1
    producer.flush()
    producer.close()
    return sent


def percentile(values: list[int], q: int) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * q) // 100)]


def run(plan: DemoPlan, out=sys.stdout) -> dict:
    started = time.monotonic()
    prefix = f"demo{time.strftime('%Y%m%d%H%M%S')}-"
    os.environ["SANDAN_TOPIC_PREFIX"] = prefix
    run_dir = Path(config.get("SANDAN_LOCAL_DIR")) / "demo" / prefix.rstrip("-")
    print(f"sandan demo: run {prefix.rstrip('-')}, {plan.count} declarations; logs and files in {run_dir}", file=out)
    kafka_io.create_topics()
    env = service_env(prefix, SANDAN_MATCH_TIMEOUT=str(plan.match_timeout_s), SANDAN_LOCAL_DIR=str(run_dir))
    services = [ServiceProcess("order-match", ["worker", "order-match"], env, run_dir).start()]
    try:
        sets, docs, expected = build_documents(plan)
        files = write_inbox(docs, run_dir / "inbox")
        print(f"  generated {len(docs)} documents in {len(files)} CEB XML files", file=out)
        sent = send_files(files)
        print(f"  sent {sent} records to Kafka", file=out)
        verdicts = wait_for_verdicts(set(expected), services, plan.wait_s)
    finally:
        for service in services:
            service.stop()
    return report(expected, verdicts, time.monotonic() - started, out)


def wait_for_verdicts(expected: set[str], services, wait_s: int) -> dict[str, dict]:
    wire = codec()
    tail = kafka_io.TopicTail(topics.name("declarations.verdicts"))
    bar = Progress("verdicts", len(expected))
    verdicts: dict[str, dict] = {}
    deadline = time.monotonic() + wait_s
    try:
        while not expected <= set(verdicts) and time.monotonic() < deadline:
            for record in tail.poll():
                verdict = wire.decode(record.value)[1]
                verdicts[verdict["declarationId"]] = verdict
            dead = [s.name for s in services if not s.alive()]
            if dead:
                raise SystemExit(f"sandan demo: {', '.join(dead)} stopped; see {services[0].log.parent}")
            bar.update(len(verdicts.keys() & expected), "waiting for incomplete ones to time out"
                       if len(verdicts) >= len(expected) * 9 // 10 else "")
    finally:
        bar.finish()
        tail.close()
    return verdicts


def report(expected: dict, verdicts: dict, seconds: float, out) -> dict:
    status = Counter(v["status"] for v in verdicts.values())
    rules = Counter(f["code"] for v in verdicts.values() if v["status"] == "rejected" for f in v["failures"])
    mismatched = [d for d, want in expected.items() if verdicts.get(d, {}).get("status") != want]
    latency = [v["decidedAt"] - v["lastDocumentAt"] for v in verdicts.values() if v["status"] != "incomplete"]
    print("", file=out)
    print("verdicts", file=out)
    for name in ("verified", "rejected", "incomplete"):
        print(f"  {name:12} {status.get(name, 0):6}", file=out)
    if rules:
        print("rejected by rule", file=out)
        for code, n in rules.most_common():
            print(f"  {code:20} {n:6}", file=out)
    print(f"match latency (last document → verdict): p50 {percentile(latency, 50)} ms,"
          f" p95 {percentile(latency, 95)} ms, p99 {percentile(latency, 99)} ms", file=out)
    print(f"every verdict as expected: {'yes' if not mismatched else f'NO, {len(mismatched)} differ'}", file=out)
    result = {"declarations": len(expected), "verified": status.get("verified", 0),
              "rejected": status.get("rejected", 0), "incomplete": status.get("incomplete", 0),
              "as_expected": not mismatched, "seconds": round(seconds, 1)}
    print(json.dumps(result), file=out)
    return result
