"""Keeping a faust worker off the two paths where faust-streaming loses records.

When a rebalance starts, or the worker stops, faust suspends its streams; an event a stream
then takes from its buffer is *skipped and acknowledged*, and the offset is committed
although nothing processed it (faust/streams.py: ``value = skipped_value`` is acked in the
``finally`` of ``Stream.__aiter__``). After a rebalance, a partition may also stay assigned
without ever being fetched again (upstream faust-streaming #216, #629). The fault suite saw
both: a document produced 20 ms before a worker was stopped, and one produced while its
partition moved, never reached a verdict; a partition kept its lag for good
(tests/faults/test_rebalance.py).

sandan's effects are idempotent and a worker killed at any moment loses nothing (proved by
tests/faults/test_crash.py), so the safe way through is to die instead:

- a rebalance that starts while this worker holds partitions makes it exit at once, with
  ``RESTART`` (75, EX_TEMPFAIL), before faust suspends anything; its supervisor (docker
  compose ``restart: unless-stopped``, systemd ``Restart=on-failure``) starts it again, and
  with static membership the new process takes its place from the committed offsets;
- SIGTERM or SIGINT flushes what the worker produced and exits with 0 without committing;
- an agent that raises (sandan's agents catch what bad input causes, so this is a bug or a
  faust fault) makes the worker exit with ``CRASHED`` (70) at once, before faust marks the
  failed record processed and restarts the agent behind it;
- an output record Kafka refuses after the producer's retries does the same, before the
  offsets of its input are committed.

Either way, what was processed but not committed is processed again (idempotent), and
nothing that was not processed is committed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

RESTART = 75  # EX_TEMPFAIL: "start me again"
CRASHED = 70  # EX_SOFTWARE: an agent failed; start again from the committed offsets (and look at the log)
FLUSH_S = 10.0

log = logging.getLogger("sandan.worker")


class RebalanceGuard:
    def __init__(self, exit_process: Callable[[int], None] = os._exit) -> None:
        self.holding = False  # this process has had partitions assigned
        self._exit = exit_process

    def on_assigned(self, assigned) -> None:
        self.holding = self.holding or bool(assigned)

    def on_rebalance_start(self) -> None:
        """Called by faust as the first step of a rebalance (from the consumer's thread)."""
        if self.holding:
            self._leave(RESTART, "a rebalance started while this worker holds partitions: exiting to be started"
                                 " again (faust would skip and commit buffered records)")

    async def on_agent_error(self, agent, exc: BaseException) -> None:
        log.critical("agent %s failed: %r", getattr(agent, "name", agent), exc, exc_info=exc)
        self._leave(CRASHED, "an agent failed: exiting before faust marks its record processed")

    def on_output_lost(self, exc: BaseException) -> None:
        """Kafka refused an output record after the producer's own retries (a broker away for
        longer than its request timeout): its input must not be committed, so exit now, before
        faust's next commit (the producer flush it waits on resumes after this callback)."""
        log.critical("Kafka did not take an output record: %r", exc)
        self._leave(CRASHED, "an output record was lost: exiting so that its input is taken again")

    async def on_stop_signal(self, flush) -> None:
        """SIGTERM/SIGINT: what was produced goes out; no offset is committed."""
        try:
            await asyncio.wait_for(flush(), FLUSH_S)
        finally:
            self._leave(0, "stop signal: produced records flushed, exiting without committing offsets")

    def _leave(self, code: int, why: str) -> None:
        log.warning(why)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        self._exit(code)


def install(app) -> RebalanceGuard:
    """Wire the guard into a faust app before its worker starts."""
    guard = RebalanceGuard()
    rebalance_start = app.on_rebalance_start

    def on_rebalance_start() -> None:
        guard.on_rebalance_start()
        rebalance_start()

    app.on_rebalance_start = on_rebalance_start  # faust calls it on the app instance
    app.on_partitions_assigned.connect(lambda _sender, assigned, **_: guard.on_assigned(assigned))
    app.sandan_output_lost = guard.on_output_lost  # see streaming.Publisher
    for agent in app.agents.values():
        agent._on_error = guard.on_agent_error  # faust's per-agent error hook, called before its restart

    @app.task
    async def take_stop_signals() -> None:
        # Runs once the worker has installed its own handlers, so these replace them.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(guard.on_stop_signal(app.producer.flush)))

    return guard
