"""Wire-format benchmark: Avro encode/decode per record, and amounts as scaled long vs decimal.

Prints one JSON object. Usage: python bench/codec.py [--records N] [--rounds R]
Each figure is the best of R rounds (least disturbed by the other process on the machine).
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import time

import fastavro

from bench import machine
from services.common.avro import SCHEMA_OF_KIND, AvroCodec, codec
from services.common.ceb.reader import parse_message
from services.common.ceb.writer import write_message
from services.tools.generator import generate


def best_of(rounds: int, fn) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def decimal_variant(schema: dict) -> dict:
    """The same schema with amounts as Avro's decimal logical type (bytes), for comparison."""
    out = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("sandan.scale"):
                dec = {"type": "bytes", "logicalType": "decimal", "precision": 19, "scale": 5}
                node["type"] = dec if node["type"] == "long" else ["null", dec]
            for value in list(node.values()):
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sets = generate(args.records, fault_share=0, seed=1)
    wire = codec()
    result: dict = {"machine": machine.describe(),
                    "records": args.records, "unit": "microseconds per record (best of %d rounds)" % args.rounds,
                    "avro": {}, "avro_fastavro": {}}
    # "avro": the codec the services use (SANDAN_AVRO_CODEC, compiled by default); "avro_fastavro":
    # fastavro's interpreter on the same records, for the ratio
    interpreted = AvroCodec(codec="fastavro")
    for kind in ("order", "payment", "logistics", "inventory"):
        docs = [getattr(s, kind) for s in sets]
        name = SCHEMA_OF_KIND[kind]
        for key, each in (("avro", wire), ("avro_fastavro", interpreted)):
            encoded = [each.encode(name, d) for d in docs]
            enc = best_of(args.rounds, lambda: [each.encode(name, d) for d in docs])
            dec = best_of(args.rounds, lambda: [each.decode(b) for b in encoded])
            result[key][kind] = {"encode_us": round(enc / len(docs) * 1e6, 2), "decode_us": round(dec / len(docs) * 1e6, 2),
                                 "bytes": round(sum(map(len, encoded)) / len(encoded))}
    # Amount representation, measured on the order record (most amounts: head + lines).
    raw = json.loads((wire.schema_dir / "order.avsc").read_text(encoding="utf-8"))
    as_long = fastavro.parse_schema(raw, named_schemas={})
    as_decimal = fastavro.parse_schema(decimal_variant(raw), named_schemas={})
    orders = [s.order for s in sets]
    entry = wire._by_name["sandan.ceb.Order"]
    scaled = [entry.to_wire(o) for o in orders]

    def write_all(schema, records):
        for r in records:
            fastavro.schemaless_writer(io.BytesIO(), schema, r)

    def read_all(schema, blobs):
        for b in blobs:
            fastavro.schemaless_reader(io.BytesIO(b), schema, None)

    def blobs(schema, records):
        out = []
        for r in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, r)
            out.append(buf.getvalue())
        return out

    long_blobs, dec_blobs = blobs(as_long, scaled), blobs(as_decimal, orders)
    t = {"long_encode": best_of(args.rounds, lambda: write_all(as_long, scaled)),
         "decimal_encode": best_of(args.rounds, lambda: write_all(as_decimal, orders)),
         "long_decode": best_of(args.rounds, lambda: read_all(as_long, long_blobs)),
         "decimal_decode": best_of(args.rounds, lambda: read_all(as_decimal, dec_blobs))}
    result["amounts_on_order"] = {k + "_us": round(v / len(orders) * 1e6, 2) for k, v in t.items()}
    result["amounts_on_order"]["decimal_over_long_encode"] = round(t["decimal_encode"] / t["long_encode"], 2)
    result["amounts_on_order"]["decimal_over_long_decode"] = round(t["decimal_decode"] / t["long_decode"], 2)
    # The XML side, for scale: one CEB311 message of 100 orders.
    xml = write_message("CEB311", orders[:100])
    result["ceb_xml"] = {"parse_100_orders_ms": round(best_of(args.rounds, lambda: parse_message(xml, xsd_dir="")) * 1e3, 2),
                         "write_100_orders_ms": round(best_of(args.rounds, lambda: write_message("CEB311", orders[:100])) * 1e3, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
