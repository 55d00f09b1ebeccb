"""The benchmark's load: generated declarations as wire records, and the producer that sends them.

Documents of a declaration come from four parties, so they arrive interleaved with other
declarations' documents: the records are shuffled within windows of ``WINDOW`` declarations.
Generating and encoding ~100,000 declarations takes half a minute, so a load is cached under
``$SANDAN_LOCAL_DIR/bench`` by its size, seed and the generator's and schemas' contents.
"""
from __future__ import annotations

import asyncio
import hashlib
import pickle
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from services.common import config, topics
from services.tools import generator
from services.common.avro import SCHEMA_DIR, SCHEMA_OF_KIND, codec
from services.common.documents import kind_of
from services.demo.parties import guarantee_plan
from services.order_match.decide import declaration_id

WINDOW = 250  # declarations whose documents interleave
KEPT_LOADS = 3


@dataclass
class Load:
    """Records in send order (short topic, key, value) and what the pipeline should make of them."""
    records: list[tuple[str, bytes, bytes]]
    closing: dict[int, str]          # index of a declaration's last record -> its declaration id
    declarations: list[str]          # in send order of their last record
    cleared: set[str]                # declarations expected on the subscriber (verified by the rules)
    guarantees: dict[str, Decimal]   # assureCode -> guaranteed amount, ample for every declaration

    def part(self, start: int, stop: int) -> "Load":
        """The declarations whose last record lies in ``records[start:stop]`` (a prefix-closed cut)."""
        closing = {i - start: d for i, d in self.closing.items() if start <= i < stop}
        ids = set(closing.values())
        return Load(self.records[start:stop], closing, [d for d in self.declarations if d in ids],
                    self.cleared & ids, self.guarantees)

    def cut(self, declarations: int) -> int:
        """Index just after the last record of the first ``declarations`` declarations."""
        if declarations >= len(self.declarations):
            return len(self.records)
        last = self.declarations[declarations - 1]
        return next(i for i, d in self.closing.items() if d == last) + 1


def _fingerprint(count: int, seed: int) -> str:
    h = hashlib.sha256(f"{count}:{seed}:{WINDOW}".encode())
    h.update(Path(generator.__file__).read_bytes())
    for path in sorted(Path(SCHEMA_DIR).glob("*.avsc")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(count: int, seed: int) -> Load:
    """``count`` declarations, 90 % good (the generator's default fault share), interleaved."""
    cache = Path(config.get("SANDAN_LOCAL_DIR")) / "bench" / f"load-{count}-{seed}-{_fingerprint(count, seed)}.pickle"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    # A buyer or two per declaration: no buyer reaches the annual limit, so the verdicts are the
    # generator's expected ones and the benchmark knows which declarations must reach customs.
    sets = generator.generate(count, buyers=max(count, 1), fault_share="0.1", seed=seed)
    wire = codec()
    rnd = random.Random(seed)
    records: list[tuple[str, bytes, bytes]] = []
    closing: dict[int, str] = {}
    for start in range(0, len(sets), WINDOW):
        window = []
        for s in sets[start:start + WINDOW]:
            decl = declaration_id(s.order["ebpCode"], s.order["orderNo"])
            for doc in s.documents:
                spec = topics.BY_NAME[topics.TOPIC_OF_KIND[kind_of(doc)]]
                window.append((decl, spec.name, topics.key_of(doc, spec), wire.encode(SCHEMA_OF_KIND[kind_of(doc)], doc)))
        rnd.shuffle(window)
        last = {decl: i for i, (decl, *_) in enumerate(window)}
        for i, (decl, topic, key, value) in enumerate(window):
            if last[decl] == i:
                closing[len(records)] = decl
            records.append((topic, key, value))
    declarations = [closing[i] for i in sorted(closing)]
    cleared = {declaration_id(s.order["ebpCode"], s.order["orderNo"]) for s in sets if s.expected_status == "verified"}
    amounts, _ = guarantee_plan(sets, short_share=Decimal(3))  # every account ample: nothing refused for want of it
    load = Load(records, closing, declarations, cleared, amounts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(load, protocol=pickle.HIGHEST_PROTOCOL))
    for old in sorted(cache.parent.glob("load-*.pickle"), key=lambda p: p.stat().st_mtime)[:-KEPT_LOADS]:
        old.unlink(missing_ok=True)  # ~2.5 KB per declaration each: keep the latest few
    return load


def producer() -> AIOKafkaProducer:
    """As the gateway publishes documents: acks=all, idempotent; batches sized for a burst."""
    return AIOKafkaProducer(bootstrap_servers=config.get("SANDAN_KAFKA_BOOTSTRAP"), acks="all",
                            enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024,
                            client_id="sandan-bench")


CHUNK = 2_000      # records handed to the producer at a time at full speed
TICK_S = 0.005     # at a fixed rate, what is due goes out every 5 ms (as a producer's linger would)
IN_FLIGHT = 400    # batches sent and not yet acknowledged, at most


async def send(load: Load, *, rate: float | None = None) -> dict[str, float]:
    """Send every record (at ``rate`` declarations/s, or as fast as Kafka takes them).

    Returns when each declaration's last record entered Kafka: the broker's append time (the
    document topics use LogAppendTime), so a queue inside this producer does not count as
    sandan's latency; the time it was handed to the producer where the broker gives none.

    Records go out as whole batches per partition (aiokafka's ``create_batch``/``send_batch``,
    partitioned as the default partitioner does): a future and a partitioner call per record
    cost the load generator more CPU than some of sandan's services, on the machine it shares
    with them (bench/RESULTS.md).
    """
    names = {t.name: t.full_name for t in topics.TOPICS}
    sent: dict[str, float] = {}
    per_record = None if rate is None else len(load.declarations) / rate / len(load.records)
    kafka = producer()
    await kafka.start()
    try:
        counts: dict[str, int] = {}  # partitions per topic, learnt on its first record
        started = time.monotonic()
        pending: list[asyncio.Future] = []
        at, total = 0, len(load.records)
        while at < total:
            if per_record is None:
                stop = min(total, at + CHUNK)
            else:
                stop = min(total, int((time.monotonic() - started) / per_record) + 1)
                if stop <= at:
                    await asyncio.sleep(TICK_S)
                    continue
            pending += await _send_chunk(kafka, load, at, stop, names, counts, sent)
            at = stop
            if len(pending) >= IN_FLIGHT:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await kafka.stop()
    return sent


async def _send_chunk(kafka: AIOKafkaProducer, load: Load, start: int, stop: int, names: dict[str, str],
                      counts: dict[str, int], sent: dict[str, float]) -> list[asyncio.Future]:
    by_partition: dict[tuple[str, int], list[int]] = {}
    for i in range(start, stop):
        topic, key, _ = load.records[i]
        if topic not in counts:
            counts[topic] = len(await kafka.partitions_for(names[topic]))
        by_partition.setdefault((topic, (murmur2(key) & 0x7FFFFFFF) % counts[topic]), []).append(i)
    deliveries = []
    for (topic, partition), indexes in by_partition.items():
        batch, closing = kafka.create_batch(), []
        for i in indexes:
            _, key, value = load.records[i]
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                deliveries.append(await _send_batch(kafka, batch, names[topic], partition, closing, sent))
                batch, closing = kafka.create_batch(), []
                batch.append(key=key, value=value, timestamp=None)
            decl = load.closing.get(i)
            if decl is not None:
                closing.append(decl)
        deliveries.append(await _send_batch(kafka, batch, names[topic], partition, closing, sent))
    return deliveries


async def _send_batch(kafka: AIOKafkaProducer, batch, topic: str, partition: int, closing: list[str],
                      sent: dict[str, float]) -> asyncio.Future:
    handed = time.time() * 1000
    for decl in closing:
        sent[decl] = handed
    delivery = await kafka.send_batch(batch, topic, partition=partition)
    if closing:
        delivery.add_done_callback(lambda done: [_appended(done, decl, sent) for decl in closing])
    return delivery


def _appended(delivery: asyncio.Future, decl: str, sent: dict[str, float]) -> None:
    if not delivery.cancelled() and delivery.exception() is None:
        meta = delivery.result()
        if meta.timestamp_type == 1 and meta.timestamp > 0:  # LogAppendTime: the broker's clock
            sent[decl] = float(meta.timestamp)
