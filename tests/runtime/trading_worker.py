"""One worker process of test_trading_partitions: a PartitionWorker counting, per key, the
records it handles in a changelog table, with one output per input record.

    python -m tests.runtime.trading_worker INPUT OUTPUT CHANGELOG STATE_FOLDER STATUS_FILE

Each input record is ``<key>:<seq>``, seq counting 0, 1, 2 ... per key. The table row of a key
is ``count:last seq:gaps``; a record whose seq is not the last one + 1 counts as a gap (handled
twice, or one skipped), so a run that handled every record once ends with count = the records
of the key, last = count - 1 and no gap. The output (key ``<input value>``) names this process.
``STATUS_FILE`` is rewritten every 0.1 s with the partitions the worker owns and has restored.
The static instance id comes from SANDAN_WORKER_ID.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker

SERVICE = "runtime-trading"


def step(row: bytes | None, seq: int) -> bytes:
    count, last, gaps = (int(x) for x in row.split(b":")) if row else (0, -1, 0)
    if seq != last + 1:
        gaps += 1
    return b"%d:%d:%d" % (count + 1, seq, gaps)


def main() -> None:
    inputs, output, changelog, folder, status = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    table = ChangelogTable(changelog, Path(folder))
    worker = PartitionWorker(SERVICE, [inputs], tables=[table])
    me = f"{worker.instance}:{os.getpid()}".encode()

    async def handle(records) -> None:
        for r in records:
            key, seq = r.value.rsplit(b":", 1)
            table.put(r.partition, key, step(table.get(key, r.partition), int(seq)))
            await worker.send(output, r.value, me)

    async def report() -> None:
        tmp = Path(status + ".tmp")
        tmp.write_text(json.dumps({"partitions": sorted(worker.partitions), "pid": os.getpid(),
                                   "guarantee": worker.guarantee}))
        tmp.replace(status)

    worker.timer(0.1, report)
    asyncio.run(worker.run(handle))


if __name__ == "__main__":
    main()
