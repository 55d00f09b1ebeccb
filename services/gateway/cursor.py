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

from services.gateway.errors import INVALID_ARGUMENT, CallError

MAX_LENGTH = 4096


def encode(topic: str, positions: dict[int, int]) -> str:
    body = json.dumps({"t": topic, "p": {str(p): o for p, o in sorted(positions.items())}}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode(cursor: str, topic: str) -> dict[int, int]:
    """Positions from a cursor of ``topic``; INVALID_ARGUMENT for anything else."""
    if len(cursor) > MAX_LENGTH:
        raise CallError(INVALID_ARGUMENT, f"cursor: longer than {MAX_LENGTH} characters")
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        found_topic, positions = raw["t"], raw["p"]
        result = {int(p): o for p, o in positions.items()}
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        raise CallError(INVALID_ARGUMENT, "cursor: not a cursor this gateway issued") from None
    if found_topic != topic:
        raise CallError(INVALID_ARGUMENT, f"cursor: issued for {found_topic!r}, not {topic!r}")
    if any(type(o) is not int or o < 0 or p < 0 for p, o in result.items()):
        raise CallError(INVALID_ARGUMENT, "cursor: partitions and offsets must be whole numbers ≥ 0")
    return result
