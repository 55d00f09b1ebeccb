"""A worker's output partition without a leader for longer than aiokafka's own bound (its request
timeout, 40 s), as while a restarted broker takes its partitions back on a loaded machine (CI's
Kafka-restart fault scenario: two workers exited 70 with LeaderNotAvailableError). Within
SANDAN_KAFKA_DELIVERY_TIMEOUT (120 s) the worker waits: no exit, every output delivered once."""
from __future__ import annotations

import pytest

from tests.runtime.fencing_run import FencingRun
from tests.runtime.test_fencing import wait

pytestmark = pytest.mark.integration
LEADERLESS_S = 50  # past aiokafka's 40 s, within the worker's bound


def test_an_output_partition_without_a_leader_for_50_s_is_waited_for(stack, topic_prefix, tmp_path, monkeypatch):
    monkeypatch.delenv("SANDAN_KAFKA_DELIVERY_TIMEOUT", raising=False)  # the default is what is shown
    run = FencingRun(topic_prefix, tmp_path, "leaderless")
    worker, log = run.start(SANDAN_TEST_LEADERLESS=f"gap:{LEADERLESS_S}")
    caught_up = run.keeps_up(worker, log)
    try:
        run.produce([b"a-%d" % n for n in range(100)])
        wait(caught_up, "the worker handled the first records")
        run.produce([b"gap"] + [b"b-%d" % n for n in range(100)])
        wait(lambda: b"no leader for" in log.read_bytes(), "the worker's outputs lost their leader")
        wait(caught_up, "the worker handled the records sent while its outputs had no leader")
        assert worker.poll() is None, f"the worker keeps running: see {log}"
    finally:
        run.close()
    assert len(run.sent) == 201
    run.audit()
