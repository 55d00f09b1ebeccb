"""The worker's way around faust's lossy rebalance and shutdown paths (services/common/rebalance_guard.py).
Its effect on real workers is proved by tests/faults/test_rebalance.py; these pin the decisions."""
from __future__ import annotations

import asyncio

import pytest

from services.common.rebalance_guard import CRASHED, RESTART, RebalanceGuard


class Exited(Exception):
    pass


def guard() -> tuple[RebalanceGuard, list[int]]:
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        raise Exited

    return RebalanceGuard(exit_process), codes


def test_the_first_join_of_a_worker_is_not_a_reason_to_exit():
    g, codes = guard()
    g.on_rebalance_start()  # faust calls it before the first assignment too
    g.on_assigned(set())
    g.on_rebalance_start()
    assert codes == []


def test_a_rebalance_after_partitions_were_held_exits_to_be_restarted():
    g, codes = guard()
    g.on_assigned({"documents.order-0"})
    with pytest.raises(Exited):
        g.on_rebalance_start()
    assert codes == [RESTART] and RESTART == 75


def test_a_stop_signal_flushes_what_was_produced_then_exits_cleanly():
    g, codes = guard()
    flushed = []

    async def flush():
        flushed.append(True)

    with pytest.raises(Exited):
        asyncio.run(g.on_stop_signal(flush))
    assert flushed == [True] and codes == [0]


def test_a_stop_signal_exits_even_when_the_flush_fails():
    g, codes = guard()

    async def flush():
        raise ConnectionError("broker away")

    with pytest.raises((Exited, ConnectionError)):
        asyncio.run(g.on_stop_signal(flush))
    assert codes == [0]


def test_an_agent_error_exits_at_once_with_its_own_code():
    g, codes = guard()
    with pytest.raises(Exited):
        asyncio.run(g.on_agent_error("agent", KeyError("message")))
    assert codes == [CRASHED] and CRASHED == 70


def test_an_output_kafka_refused_exits_before_its_input_is_committed():
    g, codes = guard()
    with pytest.raises(Exited):
        g.on_output_lost(TimeoutError("batch expired"))
    assert codes == [CRASHED]
