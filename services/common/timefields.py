"""The standard's time and date fields, read strictly (China time, UTC+8).

``appTime``, ``payTime``, ``logisticsTime`` are ``YYYYMMDDhhmmss``; receipts' ``returnTime``
adds milliseconds (``YYYYMMDDhhmmssSSS``); ``declTime`` and ``ieDate`` are ``YYYYMMDD``.
Each parser returns ``None`` for anything that is not exactly that many ASCII digits naming
a real calendar instant (no sign, no space, no full-width digit, no month 13, no 30 February),
so a caller can refuse the field instead of catching an exception. Pure: no I/O.
"""
from __future__ import annotations

from datetime import date, datetime

from services.common.clock import CHINA

TIME_FORMAT = "YYYYMMDDhhmmss"
STAMP_FORMAT = "YYYYMMDDhhmmssSSS"
DATE_FORMAT = "YYYYMMDD"
FORMATS = (TIME_FORMAT, STAMP_FORMAT, DATE_FORMAT)

_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _date_parts(text: str) -> tuple[int, int, int] | None:
    """(year, month, day) of ``YYYYMMDD`` digits at the start of ``text``, if a real date."""
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:8])
    if year < 1 or not 1 <= month <= 12 or day < 1:
        return None
    last = 29 if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else _DAYS[month]
    return (year, month, day) if day <= last else None


def _digits(text: str, length: int) -> bool:
    # isdigit alone also takes full-width and other Unicode digits; isascii rules them out.
    return len(text) == length and text.isascii() and text.isdigit()


def parse_china_date(text: str) -> date | None:
    """``YYYYMMDD`` → the date, or None."""
    if not _digits(text, 8):
        return None
    parts = _date_parts(text)
    return date(*parts) if parts else None


def parse_china_time(text: str) -> datetime | None:
    """``YYYYMMDDhhmmss`` China time → an aware datetime (tz UTC+8), or None."""
    if not _digits(text, 14):
        return None
    return _instant(text, 0)


def parse_china_stamp(text: str) -> datetime | None:
    """``YYYYMMDDhhmmssSSS`` China time → an aware datetime with milliseconds, or None."""
    if not _digits(text, 17):
        return None
    return _instant(text, int(text[14:17]) * 1000)


def _instant(text: str, microsecond: int) -> datetime | None:
    parts = _date_parts(text)
    hour, minute, second = int(text[8:10]), int(text[10:12]), int(text[12:14])
    if parts is None or hour > 23 or minute > 59 or second > 59:
        return None
    return datetime(*parts, hour, minute, second, microsecond, tzinfo=CHINA)


def is_valid(text: str, form: str) -> bool:
    """Whether ``text`` is a real instant or date written as ``form`` (one of FORMATS)."""
    if form == TIME_FORMAT:
        return parse_china_time(text) is not None
    if form == STAMP_FORMAT:
        return parse_china_stamp(text) is not None
    if form == DATE_FORMAT:
        return parse_china_date(text) is not None
    raise ValueError(f"unknown time format {form!r}")
