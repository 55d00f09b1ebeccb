"""A fault of aiokafka (0.14.0, also 0.15.0rc1) that sandan's workers must not inherit.

A transactional producer looks up its group coordinator before it adds the input offsets to a
transaction. When the broker goes away during that lookup (a restart), aiokafka's sender wraps
the connection error in a plain ``KafkaError`` and its whole sender routine dies with
"Unexpected error during batch delivery": every later send of that producer fails and the
worker exits 70, although the same lookup retries CoordinatorNotAvailable and NodeNotReady
(seen in the at-load Kafka-restart fault scenario). Here a wrapped error whose cause is
retriable is retried the same way: metadata refreshed, a backoff, the lookup again.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError
from aiokafka.producer import sender as _sender

log = logging.getLogger("sandan.worker")


def retriable_cause(err: BaseException) -> bool:
    """True for the plain ``KafkaError`` aiokafka raises in place of a retriable one."""
    cause = err.__cause__
    return type(err) is KafkaError and isinstance(cause, KafkaError) and bool(getattr(cause, "retriable", False))


def apply() -> None:
    """Once per process; the sender's own lookup is kept and called, only wrapped."""
    sender_class = _sender.Sender
    if hasattr(sender_class, "_sandan_upstream_find_coordinator"):
        return
    lookup = sender_class._find_coordinator

    async def find_coordinator(self, coordinator_type, coordinator_key):
        while True:
            try:
                return await lookup(self, coordinator_type, coordinator_key)
            except KafkaError as err:
                if not retriable_cause(err):
                    raise
                log.warning("coordinator lookup failed (%r): retrying", err.__cause__)
                await self.client.force_metadata_update()
                await asyncio.sleep(self._retry_backoff)

    sender_class._sandan_upstream_find_coordinator = lookup  # marks it done; the test watching upstream calls it
    sender_class._find_coordinator = find_coordinator
