"""`sandan publish FILE|DIR...`: CEB XML files to sandan's Kafka topics.

Bad documents go to the dead-letter topic with the reason and the rest still go through;
every record is acknowledged by the broker (acks=all) before the count is printed. Each
document carries its submitter (``services.common.senders``): ``--submitter CODE``, the
publisher's enterprise code, or by default the code its own sender field names.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from services.common.ceb.errors import CebError


def add_parser(sub) -> None:
    p = sub.add_parser("publish", help="publish CEB XML files (or folders of them) to Kafka")
    p.add_argument("paths", nargs="+", metavar="FILE|DIR")
    p.add_argument("--submitter", default="", metavar="CODE",
                   help="enterprise code publishing the documents (only it may change or withdraw them later); "
                        "default: each document's own sender field (ebpCode, payCode, logisticsCode, agentCode ...)")
    p.set_defaults(run=run)


def xml_files(paths: list[str]) -> list[Path]:
    """Files named, and *.xml under folders named (sorted, so runs are repeatable)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".xml"))
        else:
            found.append(path)
    return found


def run(args) -> int:
    from services.common import kafka_io
    from services.common.avro import codec
    from services.common.ceb.reader import parse_file
    from services.common.ingest import NotAnInputMessage, document_outputs, encode, unreadable_output
    from services.common.senders import stamp

    files = xml_files(args.paths)
    submitter = (getattr(args, "submitter", "") or "").strip() or None  # callers in code may leave it out
    if not files:
        print("sandan publish: no XML files found", file=sys.stderr)
        return 2
    wire = codec()
    counts: Counter = Counter()
    try:
        producer = kafka_io.producer()
    except kafka_io.KafkaError as exc:
        print(f"sandan publish: Kafka at {kafka_io.bootstrap()} did not answer: {exc}", file=sys.stderr)
        return 2
    pending = []
    for i, path in enumerate(files, 1):
        try:
            message = parse_file(path, lenient=True)
            for doc in message.documents:
                stamp(doc, submitter)
            outputs = document_outputs(message)
        except OSError as exc:
            print(f"sandan publish: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            counts["unreadable files"] += 1
            continue
        except (CebError, NotAnInputMessage) as exc:
            outputs = [unreadable_output(str(path), path.read_bytes(), str(exc))]
            print(f"sandan publish: {exc}", file=sys.stderr)
        for topic, key, value in encode(outputs, wire):
            pending.append(producer.send(topic, key=key, value=value))
            counts[topic] += 1
        if len(files) > 20 and i % 20 == 0:
            print(f"  {i}/{len(files)} files read", file=sys.stderr)
    producer.flush()
    failed = sum(1 for f in pending if f.failed())
    producer.close()
    summary = ", ".join(f"{topic} {n}" for topic, n in sorted(counts.items()))
    print(f"published {sum(counts.values()) - counts['unreadable files'] - failed} records from {len(files)} files"
          f" ({summary or 'nothing'})")
    if failed:
        print(f"sandan publish: {failed} records were not acknowledged by Kafka", file=sys.stderr)
        return 1
    return 0 if not counts["unreadable files"] else 1
