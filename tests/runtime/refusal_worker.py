"""A partition worker process for tests/runtime/test_refused_output.py: each input record gives
one output (``partition:offset:`` then the input's value, so a large input makes an output its
topic may refuse) and adds one to its key's count in the worker's table.

    python -m tests.runtime.refusal_worker INPUT OUTPUT CHANGELOG STATE_FOLDER
"""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker


def main(inputs: str, outputs: str, changelog: str, folder: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    table = ChangelogTable(changelog, Path(folder))
    worker = PartitionWorker("runtime-refusal", [inputs], tables=[table])

    async def handle(records: list) -> None:
        for r in records:
            count = int(table.get(r.key, r.partition) or b"0") + 1
            table.put(r.partition, r.key, b"%d" % count)
            await worker.send(outputs, r.key, b"%d:%d:" % (r.partition, r.offset) + r.value)

    asyncio.run(worker.run(handle))


if __name__ == "__main__":
    main(*sys.argv[1:5])
