"""How a stream worker leaves: the exit codes its supervisor acts on, and what happens first.

- SIGTERM or SIGINT flushes what the worker produced and exits with 0 without committing;
- a batch handler that raises (services catch what bad input causes, so this is a bug or a
  fault below them) exits with ``CRASHED`` (70, EX_SOFTWARE) before anything of its batch is
  committed: the supervisor (docker compose ``restart: unless-stopped``, systemd
  ``Restart=on-failure``) starts it again and, with static membership, the new process takes
  its place from the committed offsets;
- an output record Kafka refuses after the producer's own retries does the same, before the
  offsets of its input are committed.

Either way, what was handled but not committed is handled again (every effect is idempotent),
and nothing that was not handled is committed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

CRASHED = 70  # EX_SOFTWARE: start again from the committed offsets (and look at the log)
FLUSH_S = 10.0

log = logging.getLogger("sandan.worker")


class WorkerExit:
    def __init__(self, exit_process: Callable[[int], None] = os._exit) -> None:
        self._exit = exit_process

    async def on_handler_error(self, worker, exc: BaseException) -> None:
        log.critical("worker %s failed: %r", getattr(worker, "group", worker), exc, exc_info=exc)
        self._leave(CRASHED, "the batch handler failed: exiting before its records are committed")

    def on_output_lost(self, exc: BaseException) -> None:
        """Kafka refused an output record after the producer's own retries (a broker away for
        longer than its request timeout): its input must not be committed, so exit now."""
        log.critical("Kafka did not take an output record: %r", exc)
        self._leave(CRASHED, "an output record was lost: exiting so that its input is taken again")

    def on_start_failed(self, exc: BaseException) -> None:
        """Kafka went away between the topics' check and the clients' start: start again later."""
        log.critical("the worker's Kafka clients could not start: %r", exc)
        self._leave(CRASHED, "Kafka did not answer at start: exiting to be started again")

    def on_fenced(self, exc: BaseException) -> None:
        """Kafka refused this worker's transaction: another worker took over one of its partitions
        (this one was too slow for the group, or paused). Nothing of it after the fencing was kept."""
        log.critical("fenced: another worker owns a partition of this one now: %r", exc)
        self._leave(CRASHED, "fenced: exiting so that the worker joins its group again")

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
