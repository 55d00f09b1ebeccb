"""Kafka refuses an output of an open transaction (here a record larger than its topic takes;
in soak chunk 36 a batch that expired while its partition had no leader, then every later
batch of that producer, OutOfOrderSequenceNumber). aiokafka would still commit the transaction,
without the refused records and with the input offsets: those outputs would be lost. The
worker sends the transaction again with a new producer once; refused again, it must exit 70,
its transaction uncommitted; once the topic takes the record, the
restarted worker delivers every output exactly once and the table counts every record once."""
from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from services.common import kafka_io
from tests.runtime.fencing_run import FencingRun
from tests.runtime.test_fencing import read, wait

pytestmark = pytest.mark.integration
WAIT_S = 120  # only bounds a failure
TOPIC_LIMIT = 128 * 1024
BIG = b"x" * (200 * 1024)  # over the output topic's limit, under the producer's own


def test_an_output_kafka_refuses_stops_the_worker_before_its_transaction_commits(stack, topic_prefix, tmp_path):
    run = FencingRun(topic_prefix, tmp_path, "refusal", {"max.message.bytes": str(TOPIC_LIMIT)})
    worker, log = run.start(0)
    try:
        run.produce([b"a-%d" % n for n in range(200)])
        wait(run.caught_up, "the worker handled the first records")
        big_at = run.produce([BIG], partition_of=lambda n: 0)[0].offset
        run.produce([b"b-%d" % n for n in range(100)])
        worker.wait(timeout=WAIT_S)
        assert worker.returncode == 70, f"a refused output must stop the worker (70): see {log}"
        text = log.read_bytes()
        assert b"MessageSizeTooLarge" in text, f"the log names what Kafka refused: see {log}"
        assert b"a new producer sends its transaction again" in text, f"refused once, sent again: see {log}"
        assert run.committed()[0] <= big_at, "the refused record's input offset was not committed"
        assert not [r for r in read(run.outputs, "read_committed") if r.value.startswith(b"0:%d:" % big_at)]

        admin = kafka_io.admin()
        try:  # the topic takes the record now: the restarted worker goes on where the first stopped
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, run.outputs,
                                                configs={"max.message.bytes": str(1_048_588)})])
        finally:
            admin.close()
        restarted, restarted_log = run.start(1)
        run.produce([b"c-%d" % n for n in range(100)])
        wait(run.caught_up, "the restarted worker handled everything")
        assert restarted.poll() is None, f"the restarted worker keeps running: see {restarted_log}"
    finally:
        run.close()
    assert len(run.sent) == 401
    run.audit()
