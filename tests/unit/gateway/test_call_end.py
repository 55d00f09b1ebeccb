"""A call the client has already left: the gateway neither answers it nor logs a traceback."""
from __future__ import annotations

import asyncio
import logging

import pytest

from services.gateway import metrics
from services.gateway.client_registry import ClientRegistry, add_client
from services.gateway.errors import UNAVAILABLE, CallError
from services.gateway.ratelimit import RateLimiter
from services.gateway.service import Gateway


class EndedContext:
    """A servicer context whose call has already finished (the client cancelled it)."""

    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.aborts: list = []

    def invocation_metadata(self):
        return self.metadata

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return True

    def time_remaining(self):
        return None

    async def abort(self, code, details):  # grpc raises on a finished call; the gateway must not call it
        self.aborts.append((code, details))
        raise RuntimeError("abort on a finished call")


@pytest.fixture
def gateway(tmp_path):
    path = tmp_path / "clients.json"
    token = add_client(path, "customs-1", "customs", [])
    gw = Gateway(registry=ClientRegistry(path), publisher=None, reader=None, limiter=RateLimiter(100, 100),
                 metrics=metrics.gateway())
    return gw, token


@pytest.mark.parametrize("failure", [CallError(UNAVAILABLE, "the gateway is shutting down"), KeyError("bug")])
def test_a_failure_on_a_call_the_client_left_is_not_answered(gateway, caplog, failure):
    gw, token = gateway
    context = EndedContext(token)

    async def call():
        async with gw._call(context, "Subscribe"):
            raise failure

    with caplog.at_level(logging.INFO, logger="sandan"):
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(call())
    assert context.aborts == []
    if isinstance(failure, CallError):  # a refusal nobody hears is not an error: no traceback
        assert not [r for r in caplog.records if r.exc_info]
