"""The returns engine driven like the worker drives it, in memory.

Records go in Avro-encoded (as the worker reads them), internal topics (returns.waybills,
returns.arrivals, warehouse.arrivals) are routed back in, quota releases run against the
in-memory quota store, and every state is written and read back through its Avro schema
after each step, so a field the table schema cannot hold fails here first.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal

from services.common.avro import codec
from services.common.quota.store import MemoryPartReleases, MemoryQuotaStore
from services.returns import bucket as state
from services.returns import waybills
from services.returns.engine import (BUCKET_SOURCES, DELIVERY_SOURCE, SCHEMA_OF_SOURCE, ReturnsEngine, Settings,
                                     bucket_key, release_quota, waybill_key)

INTERNAL = ("returns.waybills", "returns.arrivals", "warehouse.arrivals")
LIMIT = Decimal("26000")


class Harness:
    def __init__(self, settings: Settings | None = None) -> None:
        self.engine = ReturnsEngine(settings or Settings())
        self.wire = codec()
        self.quota = MemoryQuotaStore()
        self.parts = MemoryPartReleases(self.quota)
        self.buckets: dict[str, bytes] = {}
        self.entries: dict[str, bytes] = {}
        self.outputs: list = []  # every external output, in order

    def reserve(self, verdict: dict) -> None:
        asyncio.run(self.quota.reserve(verdict["declarationId"], verdict["buyerKey"], verdict["quotaYear"],
                                       verdict["taxableValue"], LIMIT))

    def quota_held(self, verdict: dict) -> Decimal:
        return asyncio.run(self.quota.year_to_date(verdict["buyerKey"], verdict["quotaYear"]))

    def feed(self, source: str, record: dict, now: int) -> list:
        """The external outputs of one input (after the internal topics have been routed)."""
        queue = [(source, self.wire.encode(SCHEMA_OF_SOURCE[source], record))]
        external = []
        while queue:
            source, payload = queue.pop(0)
            step = self._take(source, payload, now)
            asyncio.run(release_quota(step.releases, self.quota, self.parts))
            for o in step.outputs:
                if o.topic in INTERNAL:
                    queue.append((o.topic, self.wire.encode(o.schema, o.record)))
                else:
                    external.append(o)
        self.outputs += external
        return external

    def _take(self, source: str, payload: bytes, now: int):
        _, record = self.wire.decode(payload)
        if source == DELIVERY_SOURCE:
            return self.engine.take_delivery(record)
        if source in BUCKET_SOURCES:
            key = bucket_key(record)
            bucket = self.bucket(key)
            step = self.engine.take(bucket, source, record, payload, now)
            self._store_bucket(key, bucket)
            return step
        key = waybill_key(record)
        entry = self.entry(key)
        step = self.engine.take_waybill(entry, source, record, payload, now)
        self.entries[key] = self.wire.encode("sandan.ReturnsWaybill", entry)
        return step

    def _store_bucket(self, key: str, bucket: dict) -> None:
        self.buckets[key] = self.wire.encode("sandan.ReturnsBucket", bucket)

    def bucket(self, order_no: str) -> dict:
        raw = self.buckets.get(order_no)
        return self.wire.decode(raw)[1] if raw else state.new_bucket(order_no)

    def entry(self, logistics_no: str) -> dict:
        raw = self.entries.get(logistics_no)
        return self.wire.decode(raw)[1] if raw else waybills.new_entry(logistics_no)

    def tick(self, now: int) -> list:
        external = []
        for key in list(self.buckets):
            bucket = self.bucket(key)
            step = self.engine.expire(bucket, now)
            self._store_bucket(key, bucket)
            asyncio.run(release_quota(step.releases, self.quota, self.parts))
            external += step.outputs
        for key in list(self.entries):
            entry = self.entry(key)
            external += self.engine.expire_waybill(entry, now).outputs
            self.entries[key] = self.wire.encode("sandan.ReturnsWaybill", entry)
        self.outputs += external
        return external


def receipts(outputs, message: str | None = None) -> list[dict]:
    return [o.record for o in outputs if o.topic == "receipts" and (message is None or o.record["message"] == message)]


def commands(outputs) -> list[dict]:
    return [o.record for o in outputs if o.topic == "guarantee.commands"]


def codes_of(receipt: dict) -> set[str]:
    return {f["code"] for f in receipt["failures"]}
