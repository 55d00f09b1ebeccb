"""The returns worker's batch step (services/returns/app.py) in at_least_once, with a stand-in
producer: the table changes of a batch are written only once its outputs are in Kafka (the state
remembers which inputs it took, so a state kept without its outputs would swallow them on
redelivery). In exactly_once one transaction holds both (tests/runtime).
The worker on the real stack, killed and restarted, is tests/integration/test_returns_stream.py."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from services.common import topics
from services.common.avro import codec
from services.returns import app

from .samples import ORDER, verdict


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: int = 0


class FakeProducer:
    """Deliveries resolve at the flush; ``seen_at_flush`` is what the bucket table held then."""

    def __init__(self, table, fail: bool) -> None:
        self.table, self.fail = table, fail
        self.sent: list[tuple[str, asyncio.Future]] = []
        self.seen_at_flush: list = []

    async def send(self, topic, value=None, key=None, partition=None):
        delivery = asyncio.get_running_loop().create_future()
        self.sent.append((topic, delivery))
        return delivery

    async def flush(self):
        self.seen_at_flush.append(self.table.get(ORDER.encode()))
        for _, delivery in self.sent:
            if not delivery.done():
                delivery.set_exception(TimeoutError("batch expired")) if self.fail else delivery.set_result(None)


@pytest.fixture
def returns(monkeypatch, tmp_path):
    monkeypatch.setenv("SANDAN_PROCESSING_GUARANTEE", "at_least_once")
    monkeypatch.setenv("SANDAN_STORE", "memory://")
    monkeypatch.setenv("SANDAN_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("SANDAN_TOPIC_PARTITIONS", "1")
    monkeypatch.setenv("SANDAN_TOPIC_PREFIX", "unit-")
    return app.ReturnsWorker()


def cleared_record() -> Record:
    return Record(topics.name("declarations.cleared"), 0, 7, ORDER.encode(), codec().encode("sandan.Verdict", verdict()))


def test_a_batch_writes_its_table_after_its_outputs_are_in_kafka(returns):
    table = returns.tables[app.BUCKETS]
    producer = returns.worker.producer = FakeProducer(table, fail=False)
    asyncio.run(returns.handle([cleared_record()]))
    assert [topic for topic, _ in producer.sent] == [topics.name("returns.waybills")]  # the waybill link
    assert producer.seen_at_flush == [None]  # the flush came before the table write
    assert table.get(ORDER.encode()) is not None
    assert [key for _, key, _ in table.changes()] == [ORDER.encode()]


def test_a_batch_whose_output_kafka_refused_keeps_no_state(returns):
    table = returns.tables[app.BUCKETS]
    returns.worker.producer = FakeProducer(table, fail=True)
    with pytest.raises(app.OutputNotDelivered):  # the worker exits 70 before committing
        asyncio.run(returns.handle([cleared_record()]))
    assert table.get(ORDER.encode()) is None and table.changes() == []
    assert returns.changed == {}


def test_an_input_that_changes_nothing_writes_no_changelog_record(returns):
    table = returns.tables[app.BUCKETS]
    returns.worker.producer = FakeProducer(table, fail=False)
    asyncio.run(returns.handle([cleared_record()]))
    assert len(table.changes()) == 1
    asyncio.run(returns.handle([cleared_record()]))  # delivered again (a restart before the commit)
    assert table.changes() == []
