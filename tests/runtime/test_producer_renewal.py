"""A task's transactional producer that its coordinator no longer knows (after a broker restart the
soak saw AddOffsetsToTxn answered INVALID_PRODUCER_ID_MAPPING; aiokafka's sender then dies and
the producer refuses everything). Made here by giving the producer an id the coordinator never
issued, on the real broker. The worker replaces the producer and sends the open transaction again:
no exit, every output once, the table counting every record once."""
from __future__ import annotations

import pytest

from tests.runtime.fencing_run import FencingRun
from tests.runtime.test_fencing import wait

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scope", ["partition", "worker"])
def test_a_producer_its_coordinator_no_longer_knows_is_replaced_and_its_transaction_sent_again(
        stack, topic_prefix, tmp_path, scope):
    run = FencingRun(topic_prefix, tmp_path, f"renewal-{scope}")
    worker, log = run.start(SANDAN_TEST_FORGET_PRODUCER_ON="forget", SANDAN_TRANSACTION_SCOPE=scope)
    caught_up = run.keeps_up(worker, log)
    try:
        run.produce([b"a-%d" % n for n in range(100)])
        wait(caught_up, "the worker handled the first records")
        run.produce([b"b-%d" % n for n in range(7)] + [b"forget"] + [b"c-%d" % n for n in range(100)])
        wait(caught_up, "the worker handled the records after its producer was forgotten")
        text = log.read_bytes()
        assert b"producer id changed" in text, f"the producer was made unknown: see {log}"
        assert b"InvalidProducerIdMapping" in text and b"a new producer sends its transaction again" in text, \
            f"the coordinator refused the producer and it was replaced: see {log}"
        assert worker.poll() is None, f"the worker keeps running: see {log}"
    finally:
        run.close()
    assert len(run.sent) == 208
    run.audit()
