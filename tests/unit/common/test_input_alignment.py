"""Which co-partitioned input partitions a worker holds back (services/common/input_alignment.py)."""
from collections import namedtuple

from services.common.input_alignment import Alignment

TP = namedtuple("TP", "topic partition")
ORDER, PAYMENT, TICKS = TP("order", 0), TP("payment", 0), TP("ticks", 0)
OTHER_TASK = TP("order", 1)
SKEW = 1000


def aligned(**times):
    """An alignment over order and payment that has read each named partition up to its time, just now."""
    a = Alignment(["order", "payment"], SKEW, lively_s=1.0)
    for name, ms in times.items():
        a.read(TP(name, 0), ms, now_s=100.0)
    return a


def more(*tps):
    return lambda tp: tp in tps


def test_a_partition_far_ahead_of_one_catching_up_is_held_and_the_laggard_never():
    a = aligned(order=10_000, payment=5_000)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.5) == {ORDER}


def test_within_the_skew_nothing_is_held():
    a = aligned(order=5_000 + SKEW, payment=5_000)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.5) == set()


def test_a_laggard_at_its_end_holds_nobody():
    a = aligned(order=10_000, payment=5_000)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER), 100.5) == set()


def test_a_laggard_that_stopped_delivering_holds_nobody_after_lively_s():
    a = aligned(order=10_000, payment=5_000)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.9) == {ORDER}
    # the order partition is paused now; the payment one brought nothing for more than a second
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 101.2) == set()


def test_a_held_partition_is_let_go_only_at_half_the_skew():
    a = aligned(order=10_000, payment=5_000)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.1) == {ORDER}
    a.read(PAYMENT, 10_000 - SKEW + 100, 100.2)  # 900 ms behind: still held (more than half the skew)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.2) == {ORDER}
    a.read(PAYMENT, 10_000 - SKEW // 2, 100.3)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.3) == set()
    # not held any more: it is held again only past the whole skew
    a.read(PAYMENT, 10_000 - SKEW + 100, 100.4)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.4) == set()


def test_tasks_are_aligned_each_on_its_own_and_other_topics_are_never_held():
    a = aligned(order=10_000, payment=5_000)
    a.read(OTHER_TASK, 50_000, 100.0)  # alone in its task: nothing to wait for
    a.read(TICKS, 90_000, 100.0)       # not an aligned input
    owned = [ORDER, PAYMENT, OTHER_TASK, TICKS]
    assert a.to_hold(owned, more(*owned), 100.5) == {ORDER}


def test_a_partition_never_read_or_not_owned_counts_for_nothing():
    a = aligned(order=10_000)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.5) == set()
    a = aligned(order=10_000, payment=5_000)
    assert a.to_hold([ORDER], more(ORDER, PAYMENT), 100.5) == set()


def test_forgetting_partitions_drops_their_times_and_holds():
    a = aligned(order=10_000, payment=5_000)
    a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.5)
    a.forget([ORDER])
    assert a.held == frozenset() and ORDER not in a.read_ms and PAYMENT in a.read_ms
    a.forget()
    assert a.read_ms == {} and a.fed_at == {}


def test_records_without_a_time_are_not_read():
    a = Alignment(["order"], SKEW)
    a.read(ORDER, None, 1.0)
    a.read(ORDER, -1, 1.0)
    assert a.read_ms == {}


def test_a_partition_started_with_more_to_read_holds_the_others_until_it_shows_its_time():
    a = Alignment(["order", "payment"], SKEW, lively_s=1.0)
    a.started([ORDER, PAYMENT], 100.0)
    a.read(ORDER, 10_000, 100.1)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.2) == {ORDER}
    a.read(PAYMENT, 9_800, 100.3)  # its first records: near enough
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 100.3) == set()


def test_a_started_partition_that_brings_nothing_holds_nobody_after_lively_s_nor_at_its_end():
    a = Alignment(["order", "payment"], SKEW, lively_s=1.0)
    a.started([ORDER, PAYMENT], 100.0)
    a.read(ORDER, 10_000, 100.1)
    assert a.to_hold([ORDER, PAYMENT], more(ORDER), 100.2) == set()  # nothing to read: at its end
    assert a.to_hold([ORDER, PAYMENT], more(ORDER, PAYMENT), 101.1) == set()
