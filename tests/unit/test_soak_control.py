"""The soak's stop and lock (tests/faults/soak_control.py): a SIGTERM must end it the way Ctrl-C
does, load cancelled and clean-up run, and a second soak on the same stack must be refused."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.faults.soak_control import hold_the_stack, stop_like_ctrl_c


@pytest.fixture
def restored_signals():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_sigterm_inside_the_asyncio_run_cancels_the_load_and_runs_its_clean_up(restored_signals, signum):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in `make soak &`: a shell's background job ignores SIGINT
    stop_like_ctrl_c()
    cleaned: list[str] = []

    async def chunk() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signum)
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("services stopped")

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(chunk())
    assert cleaned == ["services stopped"]


def test_a_sigterm_outside_the_asyncio_run_unwinds_as_ctrl_c(restored_signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_like_ctrl_c()
    reported: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once; without it the test fails below
        finally:
            reported.append("report written")
    assert reported == ["report written"]


def test_a_second_soak_on_the_same_stack_is_refused_with_the_first_ones_pid(tmp_path, capsys):
    first = hold_the_stack(tmp_path / "faults")
    assert first is not None
    assert (tmp_path / "faults" / "soak.pid").read_text() == f"{os.getpid()}\n"
    assert hold_the_stack(tmp_path / "faults") is None
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    first.close()  # the first soak ends: the lock goes with it
    again = hold_the_stack(tmp_path / "faults")
    assert again is not None
    assert (tmp_path / "faults" / "soak.pid").read_text() == f"{os.getpid()}\n"
    again.close()
