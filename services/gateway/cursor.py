"""Stream cursors: where a subscriber stands in a topic, as an opaque string.

A cursor is base64url of ``{"t": topic, "p": {partition: next offset}}`` (compact JSON):
the offset of the next record to deliver in every partition. It names the topic, so a
receipts cursor cannot be replayed against the declarations stream, and it holds no
secret: it only says how far the holder has read.
"""
from __future__ import annotations

import base64
import binascii
import json

from services.gateway.errors import INVALID_ARGUMENT, OUT_OF_RANGE, CallError

MAX_LENGTH = 4096
# Kafka offsets are signed 64-bit, partitions signed 32-bit: larger numbers cannot be a position.
MAX_OFFSET = 2**63 - 1
MAX_PARTITION = 2**31 - 1


def encode(topic: str, positions: dict[int, int]) -> str:
    body = json.dumps({"t": topic, "p": {str(p): o for p, o in sorted(positions.items())}}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode(cursor: str, topic: str) -> dict[int, int]:
    """Positions from a cursor of ``topic``; INVALID_ARGUMENT naming the cursor for anything else."""
    if len(cursor) > MAX_LENGTH:
        raise CallError(INVALID_ARGUMENT, f"cursor: longer than {MAX_LENGTH} characters")
    shown = _shown(cursor)
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        found_topic, positions = raw["t"], raw["p"]
        result = {int(p): o for p, o in positions.items()}
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        raise CallError(INVALID_ARGUMENT, f"cursor: {shown} is not a cursor this gateway issued") from None
    if found_topic != topic:
        raise CallError(INVALID_ARGUMENT, f"cursor: {shown} was issued for {found_topic!r}, not {topic!r}")
    if any(type(o) is not int or o < 0 or p < 0 for p, o in result.items()):
        raise CallError(INVALID_ARGUMENT, f"cursor: {shown} holds partitions or offsets that are not whole numbers ≥ 0")
    if any(o > MAX_OFFSET or p > MAX_PARTITION for p, o in result.items()):
        raise CallError(INVALID_ARGUMENT, f"cursor: {shown} holds an offset of 2^63 or more or a partition of 2^31 or more "
                                          f"(Kafka has none)")
    return result


def check_within(positions: dict[int, int], ends: dict[int, int], topic: str) -> None:
    """OUT_OF_RANGE when the cursor stands past the end of a partition or names one the topic lacks
    (``ends``: next offset to be written, per partition): it was not issued for this log."""
    for partition, offset in sorted(positions.items()):
        if partition not in ends:
            raise CallError(OUT_OF_RANGE, f"cursor: {topic} has no partition {partition}")
        if offset > ends[partition]:
            raise CallError(OUT_OF_RANGE, f"cursor: offset {offset} is past the end of {topic} partition "
                                          f"{partition} (next offset {ends[partition]})")


def _shown(cursor: str) -> str:
    return repr(cursor if len(cursor) <= 24 else cursor[:24] + "…")
