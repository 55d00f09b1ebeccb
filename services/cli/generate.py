"""`sandan generate`: realistic four-document declaration sets, as CEB XML or straight to Kafka."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KIND_MESSAGES = (("order", "CEB311"), ("payment", "CEB411"), ("logistics", "CEB511"), ("inventory", "CEB621"))


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="write generated declaration sets as CEB XML (or publish them to Kafka)")
    p.add_argument("--count", type=int, default=100, help="declaration sets (default 100)")
    p.add_argument("--buyers", type=int, default=50, help="distinct buyers the sets are drawn from (default 50)")
    p.add_argument("--faults", default="0.1", help="share of sets with one broken rule, e.g. 0.1 (default)")
    p.add_argument("--bonded", default="0.3", help="share of bonded (1210) declarations (default 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="folder for the XML files (default: .local/generated)")
    p.add_argument("--kafka", action="store_true", help="publish to the document topics instead of writing files")
    p.add_argument("--expected", metavar="FILE", help="also write the expected verdict of every set (JSON lines)")
    p.set_defaults(run=run)


def batches(items: list, size: int = 100):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def write_xml(sets, out: Path) -> list[Path]:
    """One file per kind and batch of up to 100 documents (the standard's message limit)."""
    from services.common.ceb.writer import write_message

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, code in KIND_MESSAGES:
        for n, batch in enumerate(batches([getattr(s, kind) for s in sets]), 1):
            path = out / f"{code}_{kind}_{n:04d}.xml"
            path.write_bytes(write_message(code, batch))
            written.append(path)
    return written


def run(args) -> int:
    from services.common.config import get
    from services.tools.generator import generate

    try:
        sets = generate(args.count, buyers=args.buyers, fault_share=args.faults, bonded_share=args.bonded,
                        seed=args.seed)
    except ValueError as exc:
        print(f"sandan generate: {exc}", file=sys.stderr)
        return 2
    faults = Counter(s.fault for s in sets if s.fault)
    if args.expected:
        with open(args.expected, "w", encoding="utf-8") as handle:
            for s in sets:
                handle.write(json.dumps({"ebpCode": s.order["ebpCode"], "orderNo": s.order["orderNo"],
                                         "status": s.expected_status, "codes": sorted(s.expected_codes)}) + "\n")
    if args.kafka:
        from services.common import kafka_io, topics
        from services.common.avro import SCHEMA_OF_KIND, codec

        wire = codec()
        kafka_io.create_topics()
        producer = kafka_io.producer()
        for s in sets:
            for kind, _ in KIND_MESSAGES:
                doc = getattr(s, kind)
                spec = topics.BY_NAME[topics.TOPIC_OF_KIND[kind]]
                producer.send(spec.full_name, key=topics.key_of(doc, spec), value=wire.encode(SCHEMA_OF_KIND[kind], doc))
        producer.flush()
        producer.close()
        print(f"published {len(sets) * 4} documents of {len(sets)} declaration sets"
              f" ({sum(faults.values())} with a fault: {dict(faults)})")
        return 0
    out = Path(args.out or Path(get("SANDAN_LOCAL_DIR")) / "generated")
    files = write_xml(sets, out)
    print(f"wrote {len(files)} files with {len(sets)} declaration sets to {out}"
          f" ({sum(faults.values())} with a fault: {dict(faults)})")
    return 0
