"""A partition worker process for tests/runtime/test_fencing.py and test_refused_output.py: each
input record gives one output (``partition:offset:`` then the input's value, so a large input
makes an output its topic may refuse) and adds one to its key's count in the worker's table. The
process whose SANDAN_TEST_PAUSE_ON names a record's value stops itself (SIGSTOP) after that
record's output has reached the broker inside its open transaction: a worker paused
mid-transaction, the zombie the test wakes once the group has moved on. With
SANDAN_TEST_LEADERLESS=VALUE:SECONDS, from the record whose value is VALUE on, the worker's
producers see no leader for the output topic's partitions for SECONDS (what a client sees while
a restarted broker has not taken its partitions back yet), its outputs waiting in their batches.
With SANDAN_TEST_FORGET_PRODUCER_ON=VALUE, once that record's output is sent, the producer of its
transaction (its task's, or the worker's one) calls itself by a producer id its transaction
coordinator does not know (what a coordinator that lost the transaction's state answers:
InvalidProducerIdMapping), once per process.

    python -m tests.runtime.fencing_worker INPUT OUTPUT CHANGELOG STATE_FOLDER [NAME]

NAME (default ``runtime-fencing``) names the worker's group: each test has its own.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from services.common.changelog_table import ChangelogTable
from services.common.partition_worker import PartitionWorker


def main(inputs: str, outputs: str, changelog: str, folder: str, name: str = "runtime-fencing") -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pause_on = os.environ.get("SANDAN_TEST_PAUSE_ON", "").encode()
    leaderless_on, _, leaderless_s = os.environ.get("SANDAN_TEST_LEADERLESS", "").encode().partition(b":")
    forget_on = os.environ.get("SANDAN_TEST_FORGET_PRODUCER_ON", "").encode()
    forgotten = []
    table = ChangelogTable(changelog, Path(folder))
    worker = PartitionWorker(name, [inputs], tables=[table])

    async def handle(records: list) -> None:
        for r in records:
            count = int(table.get(r.key, r.partition) or b"0") + 1
            table.put(r.partition, r.key, b"%d" % count)
            if leaderless_on and r.value == leaderless_on:
                no_leader(worker, outputs, float(leaderless_s))
            await worker.send(outputs, r.key, b"%d:%d:" % (r.partition, r.offset) + r.value)
            if forget_on and r.value == forget_on and not forgotten:
                forgotten.append(r.offset)
                manager = worker._tasks[worker._lane(r.partition)]._txn_manager  # aiokafka's, reached into on purpose
                manager._pid_and_epoch = manager._pid_and_epoch._replace(pid=manager._pid_and_epoch.pid + 1000)
                logging.getLogger("fencing").warning("partition %d's producer id changed", r.partition)
            if pause_on and r.value == pause_on:
                await worker._send_changes()
                await asyncio.sleep(1.0)  # past the linger: the open transaction's records are on the broker
                logging.getLogger("fencing").warning("pausing mid-transaction (SIGSTOP)")
                os.kill(os.getpid(), signal.SIGSTOP)

    asyncio.run(worker.run(handle))


def no_leader(worker: PartitionWorker, topic: str, seconds: float) -> None:
    """The producers' metadata answers "no leader" (-1) for ``topic`` until ``seconds`` from now:
    aiokafka's accumulator keeps such a partition's batches, and gives up on them past its bound."""
    until = time.monotonic() + seconds
    logging.getLogger("fencing").warning("no leader for %s for %.0f s", topic, seconds)
    for producer in [worker.producer, *worker._tasks.values()]:
        cluster = producer.client.cluster
        known = cluster.leader_for_partition

        def leader(tp, known=known):
            return -1 if tp.topic == topic and time.monotonic() < until else known(tp)

        cluster.leader_for_partition = leader


if __name__ == "__main__":
    main(*sys.argv[1:6])
