"""Seed inputs of each fuzz target and the seeded mutator that derives the fuzzed ones from them.

Seeds: every sample message (``tests.faults.hostile.samples``), one well-formed record for
every input topic of the three workers, and every file in ``tests/fuzz/corpus/<target>/``
(the committed seed corpus, which `make fuzz` grows). Mutations: byte edits (flip, insert,
delete, duplicate, truncate, splice with another seed), hostile values in place of an XML
leaf's text, and record-level edits of an Avro record (a field replaced by an empty or huge
text, a control character, an extreme or negative amount, an empty or long list) re-encoded.
"""
from __future__ import annotations

import random
import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from services.common import topics
from services.common.avro import MAX_UNITS, SCHEMA_OF_KIND, WireError, codec
from services.common.documents import kind_of
from services.demo import returns_stage
from services.order_match.decide import declaration_id
from services.returns.arrivals import arrival_record
from services.tools import generator as gen
from tests.faults import hostile
from tests.fuzz import targets

CORPUS = Path(__file__).with_name("corpus")
TARGETS = ("ceb_xml", "submit", "worker")
WIRE = codec()
INVT_NO = "29912025I000000001"

TOKENS = [b"-1", b"-0", b"+5", b"1E3", b"NaN", b"1,000", b"0.000001", b"99999999999999.99999", b"9" * 30, b"",
          b" ", b"\x00", b"\xff", b"&amp;", b"&#0;", b"&undefined;", b"<", b"]]>", "零".encode() * 50,
          b"\xef\xbb\xbf", b"<ceb:x/>", b"20250230120000", b"ABCDEFGHIJKLMN", b"3", b"142", b"\r\n", b"'\"",
          "１２３".encode()]
TEXTS = ["", " ", "\x00", "\u202e\u0000x", "零" * 600, "'; --", "../../etc/passwd", "\ud7ff", "\x07\x1b", "a\r\nb"]
AMOUNTS = [Decimal(0), Decimal(-1), Decimal("0.00001"), Decimal(MAX_UNITS).scaleb(-5), -Decimal(MAX_UNITS).scaleb(-5),
           Decimal("26000.00001"), Decimal("5000.00001"), Decimal("-0.00001")]
INTS = [0, -1, 2**31 - 1, -(2**31), 2**62, 100]
_LEAF = re.compile(rb">([^<>]{0,200})</")


def records() -> list[tuple[str, str, dict]]:
    """(topic, schema, record): one well-formed record per input topic the workers read."""
    sets = gen.generate(4, fault_share=0, seed=5)
    s = sets[0]
    decl = declaration_id(s.order["ebpCode"], s.order["orderNo"])
    verdict = {"declarationId": decl, "ebpCode": s.order["ebpCode"], "orderNo": s.order["orderNo"],
               "status": "verified", "taxTotal": s.order["taxTotal"], "valueAddedTax": s.order["taxTotal"],
               "taxableValue": s.order["goodsValue"],
               "assureCode": s.inventory["assureCode"], "buyerKey": "b" * 32, "quotaYear": 2025,
               "inventory": dict(s.inventory, invtNo=INVT_NO, preNo="B20250615000000001"),
               "lastDocumentAt": targets.NOW_MS, "decidedAt": targets.NOW_MS}
    command = {"commandId": "fuzz-1", "action": "register", "assureCode": s.inventory["assureCode"],
               "kind": "bank_guarantee", "amount": Decimal(1000), "validFrom": "20250101", "validTo": "20301231",
               "actor": "fuzz", "at": targets.NOW_MS}
    void = dict(command, commandId="fuzz-2", action="void", declarationId=decl, amount=Decimal("1.5"), kind=None)
    report = {"reportId": "fuzz-r1", "declarationId": decl, "ebpCode": s.order["ebpCode"],
              "orderNo": s.order["orderNo"], "status": "800", "decidedAt": targets.NOW_MS, "reporter": "fuzz"}
    arrival = arrival_record(logistics_no=s.logistics["logisticsNo"], sorting="fit", arrived_at=targets.NOW_MS,
                             warehouse_code=gen.WAREHOUSES[0][0])
    out = [(topics.TOPIC_OF_KIND[kind_of(d)], SCHEMA_OF_KIND[kind_of(d)], d) for x in sets for d in x.documents]
    out += [("declarations.matched", "sandan.Verdict", verdict), ("declarations.cleared", "sandan.Verdict", verdict),
            ("guarantee.commands", "sandan.GuaranteeCommand", command),
            ("guarantee.commands", "sandan.GuaranteeCommand", void),
            ("customs.reports", "sandan.CustomsReport", report),
            ("warehouse.arrivals", "sandan.WarehouseArrival", arrival),
            ("documents.cancel", "sandan.ceb.InvtCancel", returns_stage.cancellation(s, INVT_NO)),
            ("documents.refund", "sandan.ceb.InvtRefund", returns_stage.return_request(s, INVT_NO))]
    return [r for r in out if r[0] in targets.WORKER_TOPICS]


def sender_codes() -> set[str]:
    """Every code the seeds name in a sender field (the fuzzing client speaks for all of them)."""
    fields = "|".join(sorted({f for names in targets.submission.SENDER_FIELDS.values() for f in names}))
    found = {code.decode() for data in hostile.samples().values()
             for code in re.findall(rb"<ceb:(?:" + fields.encode() + rb")>([^<]+)<", data)}
    found |= {str(r.get(f)) for _, _, r in records() for f in fields.split("|") if r.get(f)}
    return found


def _submit_head(message_type: str, fmt: str) -> bytes:
    n = len(targets.SUBMIT_TYPES)
    return bytes([targets.SUBMIT_TYPES.index(message_type) + n * targets.SUBMIT_FORMATS.index(fmt)])


def _worker_head(topic: str) -> bytes:
    return bytes([targets.WORKER_TOPICS.index(topic)])


@lru_cache(maxsize=None)
def seeds(target: str) -> tuple[bytes, ...]:
    """The seed inputs of a target, as the target takes them (submit and worker: a head byte first)."""
    xml = list(hostile.samples().items())
    if target == "ceb_xml":
        out = [data for _, data in xml]
    elif target == "submit":
        out = []
        for name, data in xml:
            code = re.search(rb"<ceb:(CEB\d{3})Message", data)
            if code and code.group(1).decode() in targets.SUBMIT_TYPES:
                out.append(_submit_head(code.group(1).decode(), targets.submission.CEB_XML) + data)
        out += [_submit_head(r["message"], targets.submission.AVRO) + WIRE.encode(schema, r)
                for topic, schema, r in records() if topic.startswith("documents.") and
                r.get("message") in targets.SUBMIT_TYPES]
    else:
        out = [_worker_head(topic) + WIRE.encode(schema, r) for topic, schema, r in records()]
    folder = CORPUS / target
    if folder.is_dir():
        out += [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
    return tuple(out)


def write_corpus() -> None:
    """(Re)write the committed seed corpus: the seeds of each target, one file each."""
    for target in TARGETS:
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        existing = {p.read_bytes() for p in folder.iterdir() if p.is_file()}
        for i, data in enumerate(d for d in seeds(target) if d not in existing):
            (folder / f"seed-{len(existing) + i:03d}").write_bytes(data)


class Mutator:
    """Seeded: the same seed gives the same inputs."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self._records = records()

    def bytes_of(self, target: str) -> bytes:
        rnd = self.rnd
        pool = seeds(target)
        data = rnd.choice(pool)
        if target == "worker" and rnd.random() < 0.5:
            return self._record_edit()
        head, body = (b"", data) if target == "ceb_xml" else (data[:1], data[1:])
        if target != "ceb_xml" and rnd.random() < 0.1:
            head = bytes([rnd.randrange(256)])  # another topic, type or format for the same bytes
        for _ in range(rnd.choice((1, 1, 2, 3, 5))):
            body = self._edit(body, pool)
        return head + body

    def _edit(self, data: bytes, pool) -> bytes:
        rnd = self.rnd
        op = rnd.choice(("leaf", "leaf", "leaf", "flip", "insert", "delete", "duplicate", "truncate", "splice"))
        at = rnd.randrange(len(data) + 1)
        if op == "leaf":
            leaves = [m.span(1) for m in _LEAF.finditer(data)]
            if leaves:
                start, end = rnd.choice(leaves)
                value = rnd.choice(TOKENS) if rnd.random() < 0.7 else bytes(rnd.getrandbits(8)
                                                                              for _ in range(rnd.randint(1, 12)))
                return data[:start] + value + data[end:]
            op = "flip"
        if op == "flip" and data:
            at %= len(data)
            return data[:at] + bytes([data[at] ^ (1 << rnd.randrange(8))]) + data[at + 1:]
        if op == "insert":
            return data[:at] + rnd.choice(TOKENS) + data[at:]
        if op == "delete":
            return data[:at] + data[at + rnd.randint(1, 64):]
        if op == "duplicate":
            return data[:at] + data[at:at + rnd.randint(1, 256)] + data[at:]
        if op == "splice":
            other = rnd.choice(pool)
            cut = rnd.randrange(len(other) + 1)
            return data[:at] + other[cut:]
        return data[:at]

    def _record_edit(self) -> bytes:
        rnd = self.rnd
        for _ in range(20):
            topic, schema, record = rnd.choice(self._records)
            try:
                value = WIRE.encode(schema, self._mutated(record))
            except (WireError, ValueError, TypeError, OverflowError):
                continue  # not a record the wire format can carry: no producer could send it
            return _worker_head(topic) + value
        return _worker_head(topic) + b""

    def _mutated(self, record: dict) -> dict:
        rnd = self.rnd
        out = dict(record)
        for name in rnd.sample(sorted(out), k=min(len(out), rnd.randint(1, 4))):
            value = out[name]
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, str):
                out[name] = rnd.choice(TEXTS + [value * rnd.randint(2, 20), value.lower(), value + " "])
            elif isinstance(value, Decimal):
                out[name] = rnd.choice(AMOUNTS)
            elif isinstance(value, int):
                out[name] = rnd.choice(INTS)
            elif isinstance(value, list):
                out[name] = rnd.choice([[], value * rnd.randint(2, 30), value[::-1]])
            elif isinstance(value, dict):
                out[name] = self._mutated(value)
        lines = out.get("lines")
        if isinstance(lines, list) and lines and isinstance(lines[0], dict) and rnd.random() < 0.5:
            out["lines"] = [self._mutated(line) for line in lines]
        return out


if __name__ == "__main__":
    write_corpus()
