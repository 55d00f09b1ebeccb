"""A batch of documents through the engine, as the stream worker takes them from Kafka.

The documents go in one after the other, as ``MatchProcessor.on_document`` takes them, but

* a bucket is loaded once per batch, and the adapter saves it once, at the end;
* declarations that became complete are decided together (one round trip to each store
  for all of them, ``decide_many``). Before a document touches a bucket that still has a
  declaration to decide, the waiting ones are decided first, so each document meets the
  verdicts of the documents before it, exactly as one by one.

No Kafka or Redis here: the adapter loads buckets (``load``) and the processor's stores
decide.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.common.outputs import Output
from services.order_match.processor import MatchProcessor, Settling


@dataclass(frozen=True)
class Arrival:
    """One document as it came off a document topic."""
    key: str            # its orderNo: the bucket it goes to
    doc: dict
    raw: bytes          # its wire record
    position: str       # topic:partition:offset (see matcher's docstring on replays)
    arrived_ms: int     # when it entered Kafka: the verdict's latency counts from here
    source: object = None  # the adapter's handle on the input (its Kafka record)


class Batch:
    def __init__(self, processor: MatchProcessor, load: Callable[[Arrival], dict], now_ms: int) -> None:
        self.processor, self.load, self.now_ms = processor, load, now_ms
        self.buckets: dict[str, tuple[dict, Arrival]] = {}  # key -> bucket, last arrival for it
        self.outputs: list[Output] = []
        self._settling: list[Settling] = []
        self._unsettled: set[str] = set()
        processor.forget_claims()

    async def take(self, arrival: Arrival) -> None:
        if arrival.key in self._unsettled:
            await self.settle()
        held = self.buckets.get(arrival.key)
        bucket = held[0] if held is not None else self.load(arrival)
        self.buckets[arrival.key] = (bucket, arrival)
        self.outputs += await self.processor.replay(bucket, arrival.position, self.now_ms)
        # what the deadline closed before this document arrived, decided before it is applied
        self.outputs += await self.processor.close_due(bucket, arrival.arrived_ms, self.now_ms, arrival.position)
        taken, ready = self.processor.take(bucket, arrival.doc, self.now_ms, arrival.raw, arrival.arrived_ms,
                                           arrival.position)
        self.outputs += taken
        for ebp_code in ready:
            self._settling.append(Settling(bucket, ebp_code, arrival.position, arrival.arrived_ms))
            self._unsettled.add(arrival.key)

    async def settle(self) -> None:
        """Decide the declarations waiting since the last settle."""
        if self._settling or self.processor.claims_pending:  # the waybill claims of inventories go out too
            self.outputs += await self.processor.settle_many(self._settling, self.now_ms)
            self._settling, self._unsettled = [], set()


async def run(processor: MatchProcessor, arrivals: list[Arrival], load: Callable[[Arrival], dict],
              now_ms: int) -> Batch:
    """Every arrival taken, every complete declaration decided, customs' numbers given."""
    batch = Batch(processor, load, now_ms)
    for arrival in arrivals:
        await batch.take(arrival)
    await batch.settle()
    await processor.number(batch.outputs, now_ms)
    return batch
