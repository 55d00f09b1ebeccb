"""Expiry follows the documents' arrival times, not the wall clock, while a worker is behind.

Each call gives the broker's time as far as read (ms) and the worker's own elapsed time
(monotonic ms, ``seen``); idleness is counted in the latter only.
"""
from services.order_match.stream_clock import StreamClock

TOPICS = ("order", "payment", "logistics", "inventory")
IDLE = 5_000
SEEN = 7_000_000  # any monotonic origin: only differences count


def clock_reading_all(arrived: int, seen: int) -> StreamClock:
    clock = StreamClock(TOPICS, IDLE)
    for topic in TOPICS:
        clock.read(topic, 0, arrived, seen)
    return clock


def test_a_partition_not_read_since_assignment_holds_expiry_back_until_idle():
    clock = StreamClock(TOPICS, IDLE)
    assert clock.now(0, 100_000, SEEN) == 0
    assert clock.now(0, 100_000, SEEN + IDLE - 1) == 0
    assert clock.now(0, 100_000, SEEN + IDLE) == 100_000


def test_a_worker_reading_a_backlog_runs_on_the_backlogs_time():
    broker = 10_000_000
    clock = clock_reading_all(arrived=broker - 3_600_000, seen=SEEN)  # an hour behind
    assert clock.now(0, broker, SEEN) == broker - 3_600_000


def test_the_slowest_topic_sets_the_time():
    broker = 10_000_000
    clock = StreamClock(TOPICS, IDLE)
    for topic in TOPICS:
        clock.read(topic, 0, broker - (60_000 if topic == "payment" else 1_000), SEEN)
    assert clock.now(0, broker, SEEN) == broker - 60_000


def test_a_topic_with_nothing_to_read_for_idle_does_not_hold_the_clock():
    broker = 10_000_000
    clock = clock_reading_all(arrived=broker - 1_000, seen=SEEN + IDLE)
    clock.read("payment", 0, broker - 60_000, SEEN)  # nothing read since
    assert clock.now(0, broker, SEEN + IDLE) == broker - 1_000


def test_caught_up_and_quiet_the_clock_is_the_brokers_time():
    broker = 10_000_000
    clock = clock_reading_all(arrived=broker - 1_000, seen=SEEN)
    assert clock.now(0, broker, SEEN + IDLE) == broker


def test_partitions_are_independent():
    broker = 10_000_000
    clock = clock_reading_all(arrived=broker - 1_000, seen=SEEN)
    for topic in TOPICS:
        clock.read(topic, 1, broker - 50_000, SEEN + IDLE)
    assert clock.now(0, broker, SEEN + IDLE) == broker
    assert clock.now(1, broker, SEEN + IDLE) == broker - 50_000


def test_the_clock_never_goes_back():
    broker = 10_000_000
    clock = clock_reading_all(arrived=broker, seen=SEEN)
    assert clock.now(0, broker, SEEN + IDLE) == broker
    clock.read("order", 0, broker - 90_000, SEEN + IDLE)  # an old record read late (another producer's clock)
    assert clock.now(0, broker + 1, SEEN + IDLE) == broker


def test_after_a_reassignment_the_backlog_is_waited_for_again():
    broker = 10_000_000
    clock = clock_reading_all(arrived=broker - 1_000, seen=SEEN)
    assert clock.now(0, broker, SEEN + IDLE) == broker
    clock.forget()
    assert clock.now(0, broker + 1, SEEN + IDLE) == 0


def test_after_an_outage_a_backlog_read_a_moment_ago_holds_the_first_new_tick():
    """The CI failure of 2026-12-06 (test_a_worker_down_past_the_timeout…): a worker restarted after
    the match timeout first reads a tick its predecessor left (broker time T), then part of the
    backlog that arrived in time (T+1 s .. T+4 s), then its own first tick (T+23 s), all within a
    second. Counted in broker time, every topic looked idle to that tick and the clock jumped to
    T+23 s, expiring declarations whose last documents were still unread."""
    t = 10_000_000
    clock = StreamClock(TOPICS, IDLE)
    assert clock.now(0, t, SEEN) == 0  # the old tick: no topic seen yet
    for i, topic in enumerate(("payment", "logistics", "inventory"), start=1):
        clock.read(topic, 0, t + 1_000 * i, SEEN + 200)
    assert clock.now(0, t + 23_000, SEEN + 500) <= t + 1_000  # nothing past what was read
    # the backlog read to its end and then quiet for idle: the clock catches up with the broker
    for topic in ("payment", "logistics", "inventory"):
        clock.read(topic, 0, t + 4_000, SEEN + 900)
    assert clock.now(0, t + 30_000, SEEN + 900 + IDLE) == t + 30_000
