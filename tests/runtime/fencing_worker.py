"""A partition worker process for tests/runtime/test_fencing.py and test_refused_output.py: each
input record gives one output (``partition:offset:`` then the input's value, so a large input
makes an output its topic may refuse) and adds one to its key's count in the worker's table. The
process whose SANDAN_TEST_PAUSE_ON names a record's value stops itself (SIGSTOP) after that
record's output has reached the broker inside its open transaction: a worker paused
mid-transaction, the zombie the test wakes once the group has moved on.

    python -m tests.runtime.fencing_worker INPUT OUTPUT CHANGELOG STATE_FOLDER [NAME]

NAME (default ``runtime-fencing``) names the worker's group: each test has its own.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker


def main(inputs: str, outputs: str, changelog: str, folder: str, name: str = "runtime-fencing") -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pause_on = os.environ.get("SANDAN_TEST_PAUSE_ON", "").encode()
    table = ChangelogTable(changelog, Path(folder))
    worker = PartitionWorker(name, [inputs], tables=[table])

    async def handle(records: list) -> None:
        for r in records:
            count = int(table.get(r.key, r.partition) or b"0") + 1
            table.put(r.partition, r.key, b"%d" % count)
            await worker.send(outputs, r.key, b"%d:%d:" % (r.partition, r.offset) + r.value)
            if pause_on and r.value == pause_on:
                await worker._send_changes()
                await asyncio.sleep(1.0)  # past the linger: the open transaction's records are on the broker
                logging.getLogger("fencing").warning("pausing mid-transaction (SIGSTOP)")
                os.kill(os.getpid(), signal.SIGSTOP)

    asyncio.run(worker.run(handle))


if __name__ == "__main__":
    main(*sys.argv[1:6])
