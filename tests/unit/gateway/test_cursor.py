"""Cursors: opaque, round-trip exactly, refuse anything the gateway did not issue for that stream."""
from __future__ import annotations

import base64

import pytest

from services.gateway import cursor
from services.gateway.errors import INVALID_ARGUMENT, CallError


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
