"""aiokafka_fixes: a coordinator lookup that meets a broker going away is retried, not fatal."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.client import CoordinationType
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, KafkaError
from aiokafka.producer.sender import Sender

from services.common import aiokafka_fixes


class FakeClient:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures, self.lookups, self.refreshes = list(failures), 0, 0

    async def coordinator_lookup(self, coordinator_type, key):
        self.lookups += 1
        if self.failures:
            raise self.failures.pop(0)
        return 1

    async def ready(self, node_id, group=None):
        return True

    async def force_metadata_update(self):
        self.refreshes += 1


class FakeSender:
    """What the sender's lookup reads of itself."""
    def __init__(self, client: FakeClient) -> None:
        self.client, self._coordinators, self._retry_backoff = client, {}, 0.001
        self._txn_manager = object()


def lookup(sender: FakeSender, method=None):
    method = method or Sender._find_coordinator
    return asyncio.run(method(sender, CoordinationType.GROUP, "group"))


def test_a_broker_gone_during_the_lookup_is_waited_out():
    aiokafka_fixes.apply()
    client = FakeClient([KafkaConnectionError("Connection at 127.0.0.1:29092 closed")] * 2)
    assert lookup(FakeSender(client)) == 1
    assert client.lookups == 3 and client.refreshes >= 2


def test_what_is_not_retriable_still_fails_at_once():
    aiokafka_fixes.apply()
    client = FakeClient([GroupAuthorizationFailedError()])
    with pytest.raises(GroupAuthorizationFailedError):
        lookup(FakeSender(client))
    assert client.lookups == 1


def test_upstream_still_turns_the_connection_error_into_a_fatal_one():
    # when this fails, aiokafka retries the lookup itself: aiokafka_fixes can go
    aiokafka_fixes.apply()
    client = FakeClient([KafkaConnectionError("closed")])
    with pytest.raises(KafkaError) as raised:
        lookup(FakeSender(client), Sender._sandan_upstream_find_coordinator)
    assert type(raised.value) is KafkaError and aiokafka_fixes.retriable_cause(raised.value)
