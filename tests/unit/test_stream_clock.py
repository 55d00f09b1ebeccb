"""Expiry follows the documents' arrival times, not the wall clock, while a worker is behind."""
from services.order_match.stream_clock import StreamClock

TOPICS = ("order", "payment", "logistics", "inventory")
IDLE = 5_000


def clock_reading_all(arrived: int, wall: int) -> StreamClock:
    clock = StreamClock(TOPICS, IDLE)
    for topic in TOPICS:
        clock.read(topic, 0, arrived, wall)
    return clock


def test_a_partition_not_read_since_assignment_holds_expiry_back_until_idle():
    clock = StreamClock(TOPICS, IDLE)
    assert clock.now(0, 100_000) == 0
    assert clock.now(0, 100_000 + IDLE - 1) == 0
    assert clock.now(0, 100_000 + IDLE) == 100_000 + IDLE


def test_a_worker_reading_a_backlog_runs_on_the_backlogs_time():
    wall = 10_000_000
    clock = clock_reading_all(arrived=wall - 3_600_000, wall=wall)  # an hour behind
    assert clock.now(0, wall) == wall - 3_600_000


def test_the_slowest_topic_sets_the_time():
    wall = 10_000_000
    clock = StreamClock(TOPICS, IDLE)
    for topic in TOPICS:
        clock.read(topic, 0, wall - (60_000 if topic == "payment" else 1_000), wall)
    assert clock.now(0, wall) == wall - 60_000


def test_a_topic_with_nothing_to_read_for_idle_does_not_hold_the_clock():
    wall = 10_000_000
    clock = clock_reading_all(arrived=wall - 1_000, wall=wall)
    clock.read("payment", 0, wall - 60_000, wall - IDLE)  # nothing read since
    assert clock.now(0, wall) == wall - 1_000


def test_caught_up_and_quiet_the_clock_is_the_wall_clock():
    wall = 10_000_000
    clock = clock_reading_all(arrived=wall - 1_000, wall=wall - IDLE)
    assert clock.now(0, wall) == wall


def test_partitions_are_independent():
    wall = 10_000_000
    clock = clock_reading_all(arrived=wall - 1_000, wall=wall - IDLE)
    for topic in TOPICS:
        clock.read(topic, 1, wall - 50_000, wall)
    assert clock.now(0, wall) == wall
    assert clock.now(1, wall) == wall - 50_000


def test_the_clock_never_goes_back():
    wall = 10_000_000
    clock = clock_reading_all(arrived=wall, wall=wall - IDLE)
    assert clock.now(0, wall) == wall
    clock.read("order", 0, wall - 90_000, wall)  # an old record read late (another producer's clock)
    assert clock.now(0, wall + 1) == wall


def test_after_a_reassignment_the_backlog_is_waited_for_again():
    wall = 10_000_000
    clock = clock_reading_all(arrived=wall - 1_000, wall=wall - IDLE)
    assert clock.now(0, wall) == wall
    clock.forget()
    assert clock.now(0, wall + 1) == 0
