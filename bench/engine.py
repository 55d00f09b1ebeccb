"""order_match's engine alone, without Kafka or Redis: CPU microseconds per declaration.

What the worker does per document, minus the transport: decode the record, read its bucket
from a table (here a dict of bytes), match, decide complete declarations (memory quota and
waybill stores), encode the bucket back and every output. Prints one JSON object.

    python -m bench.engine [--declarations 5000] [--rounds 3]

It runs on any version of the engine (``on_document`` with or without the wire record), so
the same command measures a change before and after (see bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import time

from services.common.avro import SCHEMA_OF_KIND, codec
from services.common.documents import kind_of
from services.tools.generator import generate
from services.order_match import matcher
from services.order_match.processor import MatchProcessor
from services.common.quota.store import MemoryQuotaStore
from services.common.rates import load_rates
from services.order_match.rules import RuleSettings
from services.order_match.waybills import MemoryWaybillRegistry

NO_APP_TIME_CHECK = 10**15  # these clocks start in 1970, before every appTime (APP_TIME is not what this measures)


async def one_round(records: list[bytes]) -> float:
    wire = codec()
    processor = MatchProcessor(quota=MemoryQuotaStore(), waybills=MemoryWaybillRegistry(), settings=RuleSettings(),
                               rates=load_rates(), timeout_ms=10**9,
                               app_time_skew_ms=NO_APP_TIME_CHECK)
    takes_raw = "raw" in inspect.signature(processor.on_document).parameters
    table: dict[str, bytes] = {}
    started = time.process_time()
    for offset, value in enumerate(records):
        _, doc = wire.decode(value)
        key = doc["orderNo"].strip()
        held = table.get(key)
        bucket = wire.decode(held)[1] if held is not None else matcher.new_bucket(key)
        extra = {"raw": value} if takes_raw else {}
        outputs = await processor.on_document(bucket, doc, 1000 + offset, f"documents.x:0:{offset}", **extra)
        table[key] = wire.encode("sandan.MatchBucket", bucket)
        encoded: dict[int, bytes] = {}
        for o in outputs:  # a record on two topics is encoded once, as the worker does
            if id(o.record) not in encoded:
                encoded[id(o.record)] = wire.encode(o.schema, o.record)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--declarations", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wire = codec()
    sets = generate(args.declarations, buyers=args.declarations, fault_share="0.1", seed=5)
    docs = [d for s in sets for d in s.documents]
    random.Random(1).shuffle(docs)
    records = [wire.encode(SCHEMA_OF_KIND[kind_of(d)], d) for d in docs]
    best = min(asyncio.run(one_round(records)) for _ in range(args.rounds))
    print(json.dumps({"declarations": args.declarations, "documents": len(records),
                      "engine_us_per_declaration": round(best / args.declarations * 1e6),
                      "unit": f"CPU time, best of {args.rounds} rounds"}))


if __name__ == "__main__":
    main()
