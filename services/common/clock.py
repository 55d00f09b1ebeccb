"""Time as the CEB standard writes it: China time (UTC+8, no daylight saving)."""
from __future__ import annotations

import calendar
import time
from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "CST")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The last second china_stamp formatted, and its text: a declaration's receipts share one
# decision time, and formatting a datetime costs more than the rest of a receipt. One tuple,
# replaced whole, so concurrent callers see a matching pair.
_last_second: tuple[int, str] = (0, datetime.fromtimestamp(0, CHINA).strftime("%Y%m%d%H%M%S"))


def china_stamp(ms: int) -> str:
    """``YYYYMMDDhhmmssSSS`` (receipts' returnTime)."""
    global _last_second
    second = ms // 1000
    last = _last_second
    if last[0] != second:
        last = _last_second = (second, datetime.fromtimestamp(second, CHINA).strftime("%Y%m%d%H%M%S"))
    return last[1] + f"{ms % 1000:03d}"


def parse_app_time(text: str) -> datetime:
    """``YYYYMMDDhhmmss`` in China time → aware datetime; ValueError for anything else.

    Exactly fourteen ASCII digits naming a real instant (surrounding white space aside): no
    sign, no space inside, no single-digit field, no full-width digit, no 30 February.
    """
    s = text.strip()
    if len(s) == 14 and s.isascii() and s.isdigit():
        month, day, hour, minute, sec = int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), int(s[12:14])
        if 1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and sec <= 59:
            return datetime(int(s[:4]), month, day, hour, minute, sec, tzinfo=CHINA)  # raises on 30 February
    raise ValueError(f"{text!r} is not a YYYYMMDDhhmmss China time")


def months_after(moment: datetime, months: int) -> datetime:
    """The same wall-clock time ``months`` calendar months later, the day kept where the month
    has it and otherwise the month's last (31 August + 6 months is 28 or 29 February)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def months_after_ms(ms: int, months: int) -> int:
    """``months_after`` of an epoch-milliseconds instant, counted on China's calendar."""
    moment = datetime.fromtimestamp(ms // 1000, CHINA).replace(microsecond=0)
    return int(months_after(moment, months).timestamp()) * 1000 + ms % 1000
