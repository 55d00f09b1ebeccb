"""How a stream worker leaves (services/common/worker_exit.py). Its effect on real workers is
proved by the fault suite (tests/faults); these pin the decisions."""
from __future__ import annotations

import asyncio

import pytest

from services.common.worker_exit import CRASHED, WorkerExit


class Exited(Exception):
    pass


def exits() -> tuple[WorkerExit, list[int]]:
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        raise Exited

    return WorkerExit(exit_process), codes


def test_a_stop_signal_flushes_what_was_produced_then_exits_cleanly():
    e, codes = exits()
    flushed = []

    async def flush():
        flushed.append(True)

    with pytest.raises(Exited):
        asyncio.run(e.on_stop_signal(flush))
    assert flushed == [True] and codes == [0]


def test_a_stop_signal_exits_even_when_the_flush_fails():
    e, codes = exits()

    async def flush():
        raise ConnectionError("broker away")

    with pytest.raises((Exited, ConnectionError)):
        asyncio.run(e.on_stop_signal(flush))
    assert codes == [0]


def test_a_handler_error_exits_at_once_with_its_own_code():
    e, codes = exits()
    with pytest.raises(Exited):
        asyncio.run(e.on_handler_error("worker", KeyError("message")))
    assert codes == [CRASHED] and CRASHED == 70


def test_an_output_kafka_refused_exits_before_its_input_is_committed():
    e, codes = exits()
    with pytest.raises(Exited):
        e.on_output_lost(TimeoutError("batch expired"))
    assert codes == [CRASHED]
