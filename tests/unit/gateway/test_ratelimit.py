"""Token buckets per client: a burst, then RESOURCE_EXHAUSTED with a retry hint, then refill."""
from __future__ import annotations

import pytest

from services.gateway.errors import RESOURCE_EXHAUSTED, CallError
from services.gateway.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_burst_then_refused_then_refilled_at_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate_per_second=10, burst=3, clock_ns=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(CallError) as err:
        limiter.take("a")
    assert err.value.status == RESOURCE_EXHAUSTED and "retry in 100 ms" in err.value.message
    clock.ns += 99_000_000
    with pytest.raises(CallError):
        limiter.take("a")
    clock.ns += 1_000_000  # 100 ms in all: one token at 10 per second
    limiter.take("a")


def test_each_client_has_its_own_bucket():
    limiter = RateLimiter(rate_per_second=1, burst=1, clock_ns=Clock())
    limiter.take("a")
    limiter.take("b")
    with pytest.raises(CallError):
        limiter.take("a")


def test_an_idle_client_saves_no_more_than_the_burst():
    clock = Clock()
    limiter = RateLimiter(rate_per_second=1000, burst=2, clock_ns=clock)
    clock.ns += 3600 * 10**9
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(CallError):
        limiter.take("a")
