from fractions import Fraction

import pytest

from services.paydata.sampler import parse_share, picked


def test_the_same_declarations_are_picked_on_every_run_and_about_the_share():
    ids = [f"3301963K27:O{i:06d}" for i in range(20_000)]
    first = [i for i in ids if picked(i, Fraction(1, 100), b"k")]
    assert first == [i for i in ids if picked(i, Fraction(1, 100), b"k")]
    assert 120 <= len(first) <= 280  # 1 % of 20,000 = 200


def test_share_zero_picks_none_one_picks_all_and_the_key_changes_the_pick():
    ids = [f"E:O{i}" for i in range(2000)]
    assert not any(picked(i, Fraction(0), b"k") for i in ids)
    assert all(picked(i, Fraction(1), b"k") for i in ids)
    assert {i for i in ids if picked(i, Fraction(1, 10), b"k")} != {i for i in ids if picked(i, Fraction(1, 10), b"x")}


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "a lot", "NaN"])
def test_a_share_outside_0_to_1_is_refused(bad):
    with pytest.raises(ValueError):
        parse_share(bad)


def test_a_share_is_exact():
    assert parse_share("0.01") == Fraction(1, 100)
