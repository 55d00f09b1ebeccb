"""Loaded first by a process the fault suite runs under libfaketime (``fake_clock.py`` puts this
folder on its PYTHONPATH). libfaketime 0.9.10 with the monotonic clock left alone answers
``clock_nanosleep`` with EINVAL, which is what ``time.sleep`` calls: here it waits on an event
instead (the monotonic clock, as before)."""
import threading
import time

_never = threading.Event()


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _never.wait(seconds)


time.sleep = _sleep
