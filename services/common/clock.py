"""Time as the CEB standard writes it: China time (UTC+8, no daylight saving)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "CST")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def china_stamp(ms: int) -> str:
    """``YYYYMMDDhhmmssSSS`` (receipts' returnTime)."""
    dt = datetime.fromtimestamp(ms // 1000, CHINA)
    return dt.strftime("%Y%m%d%H%M%S") + f"{ms % 1000:03d}"


def parse_app_time(text: str) -> datetime:
    """``YYYYMMDDhhmmss`` in China time → aware datetime."""
    return datetime.strptime(text.strip(), "%Y%m%d%H%M%S").replace(tzinfo=CHINA)
