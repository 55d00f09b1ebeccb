"""The expiry schedule per partition (services/returns/wakeups.py) and the metrics the worker counts."""
from __future__ import annotations

from services.common.outputs import Output
from services.returns import metrics
from services.returns.wakeups import Wakeups


def test_due_keys_come_once_in_time_order_and_only_for_their_partition():
    w = Wakeups()
    w.push(0, 30, "bucket", "B")
    w.push(0, 10, "bucket", "A")
    w.push(0, 20, "bucket", "A")
    w.push(1, 5, "waybill", "X")
    assert w.due(0, 25) == [("bucket", "A")]
    assert w.due(0, 25) == []
    assert w.due(1, 4) == []
    assert w.due(1, 5) == [("waybill", "X")]
    assert len(w) == 1
    w.reset(frozenset({0}))
    assert len(w) == 0 and w.partitions == frozenset({0})


def _value(counter, **labels):
    return counter.labels(**labels)._value.get()


def test_decisions_and_refusal_reasons_are_counted_from_the_receipts():
    m = metrics.returns()
    refused = Output("receipts", b"A", "sandan.Receipt", {"message": "CEB626", "returnStatus": "100",
                                                          "failures": [{"code": "RETURN_LATE"}]})
    completed = Output("receipts", b"A", "sandan.Receipt", {"message": "CEB626", "returnStatus": "399", "failures": []})
    void = Output("guarantee.commands", b"A", "sandan.GuaranteeCommand", {"commandId": "void:return:G"})
    def counts():
        return (_value(m.decisions, kind="return", outcome="refused"),
                _value(m.refusals, kind="return", code="RETURN_LATE"),
                _value(m.decisions, kind="return", outcome="completed"), _value(m.voids, reason="return"))

    before = counts()
    for output in (refused, completed, void):
        metrics.count_output(m, output)
    assert [b - a for a, b in zip(before, counts())] == [1, 1, 1, 1]
