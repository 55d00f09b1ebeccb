"""Cursors: opaque, round-trip exactly, refuse anything the gateway did not issue for that stream."""
from __future__ import annotations

import base64

import pytest

from services.gateway import cursor
from services.gateway.errors import INVALID_ARGUMENT, OUT_OF_RANGE, CallError


def test_round_trip_keeps_every_partition():
    positions = {0: 17, 1: 0, 3: 123456789012}
    assert cursor.decode(cursor.encode("declarations.cleared", positions), "declarations.cleared") == positions


def test_a_cursor_is_bound_to_its_stream():
    other = cursor.encode("receipts", {0: 1})
    with pytest.raises(CallError) as err:
        cursor.decode(other, "declarations.cleared")
    assert err.value.status == INVALID_ARGUMENT and "receipts" in err.value.message


@pytest.mark.parametrize("text", ["not base64 at all!", base64.urlsafe_b64encode(b"[1,2]").decode(),
                                  base64.urlsafe_b64encode(b'{"t":"receipts","p":{"x":1}}').decode(),
                                  base64.urlsafe_b64encode(b'{"t":"receipts","p":{"0":-1}}').decode(),
                                  base64.urlsafe_b64encode(b'{"t":"receipts","p":{"0":1.5}}').decode(),
                                  "A" * 5000])
def test_malformed_cursors_are_invalid_arguments(text):
    with pytest.raises(CallError) as err:
        cursor.decode(text, "receipts")
    assert err.value.status == INVALID_ARGUMENT and err.value.message.startswith("cursor:")


@pytest.mark.parametrize("positions", [{0: 2**63}, {0: 2**64 + 5}, {2**31: 0}])
def test_offsets_beyond_kafkas_range_are_invalid_arguments_naming_the_cursor(positions):
    text = cursor.encode("receipts", positions)
    with pytest.raises(CallError) as err:
        cursor.decode(text, "receipts")
    assert err.value.status == INVALID_ARGUMENT
    assert err.value.message.startswith(f"cursor: '{text[:24]}") and "2^63 or more" in err.value.message


def test_the_largest_kafka_offset_is_still_a_position():
    assert cursor.decode(cursor.encode("receipts", {0: 2**63 - 1}), "receipts") == {0: 2**63 - 1}


def test_a_cursor_past_the_end_or_naming_a_missing_partition_is_out_of_range():
    cursor.check_within({0: 5, 1: 0}, {0: 5, 1: 3}, "t")  # at the end: nothing new yet, fine
    for positions, problem in (({0: 6}, "offset 6 is past the end of t partition 0 (next offset 5)"),
                               ({7: 0}, "t has no partition 7")):
        with pytest.raises(CallError) as err:
            cursor.check_within(positions, {0: 5, 1: 3}, "t")
        assert err.value.status == OUT_OF_RANGE and err.value.message == f"cursor: {problem}"
