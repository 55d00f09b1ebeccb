"""The shared reader's hand-out to one joined stream (services/gateway/fanout.py), without Kafka:
a stream that joined ahead of the shared reader in a partition gets only what it has not
had, with cursors of its own positions; one in step gets the shared batch as it is."""
from __future__ import annotations

from services.gateway import cursor
from services.gateway.fanout import _Member
from services.gateway.kafka_bridge import LogRecord, StreamStats

TOPIC = "declarations.cleared"


def shared_batch(before: dict[int, int], reads: list[tuple[int, int]]) -> list[LogRecord]:
    """Records (partition, offset) as the shared reader makes them, cursors from its positions."""
    at, out = dict(before), []
    for partition, offset in reads:
        at[partition] = offset + 1
        out.append(LogRecord(partition, offset, b"k", b"v", cursor.encode(TOPIC, at)))
    return out


def member(at: dict[int, int]) -> tuple[_Member, list[int]]:
    lags: list[int] = []
    return _Member(at, StreamStats("Subscribe", "customs"), lags.append, capacity=4), lags


def test_a_stream_ahead_in_one_partition_gets_only_the_records_past_its_own_position():
    before = {0: 5, 1: 3}
    records = shared_batch(before, [(0, 5), (0, 6), (0, 7), (1, 3), (1, 4)])
    stream, lags = member({0: 7, 1: 3})  # it had read partition 0 up to offset 6 on its own consumer

    mine = stream.mine(TOPIC, records, before)
    stream.took(mine, {0: 8, 1: 9})

    assert [(r.partition, r.offset) for r in mine] == [(0, 7), (1, 3), (1, 4)]
    assert [cursor.decode(r.cursor, TOPIC) for r in mine] == [{0: 8, 1: 3}, {0: 8, 1: 4}, {0: 8, 1: 5}]
    assert stream.at == {0: 8, 1: 5} and stream.stats.taken == 3
    assert lags == [4]  # partition 1 has records 5..8 left on Kafka


def test_a_stream_in_step_with_the_shared_reader_gets_its_batch_unchanged():
    before = {0: 5, 1: 3}
    records = shared_batch(before, [(0, 5), (1, 3)])
    stream, _ = member(dict(before))

    mine = stream.mine(TOPIC, records, before)

    assert mine is records  # same records, same cursors: nothing re-encoded per stream


def test_records_the_stream_has_had_in_every_partition_give_it_nothing():
    before = {0: 0}
    stream, lags = member({0: 3})
    mine = stream.mine(TOPIC, shared_batch(before, [(0, 0), (0, 1), (0, 2)]), before)
    stream.took(mine, {0: 3})
    assert mine == [] and stream.at == {0: 3} and lags == [0]
