"""Customs decisions reported through the gateway, checked and shaped as sandan.CustomsReport.

Pure. Status codes are DOMAIN §1's: 120 accepted, 399 concluded, 800 released (with the
release time, which starts the return and tax-settlement clocks), 100 rejected (with the
reason). ``reportId`` is the consumers' idempotency key; without one from the caller it is
``ebpCode:orderNo:status``, since customs takes each of these decisions once per declaration.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from services.common.clock import parse_app_time
from services.common.outputs import Output
from services.gateway.errors import INVALID_ARGUMENT, CallError

ACCEPTED, CONCLUDED, RELEASED, REJECTED = "120", "399", "800", "100"
STATUSES = {ACCEPTED: "accepted", CONCLUDED: "concluded", RELEASED: "released", REJECTED: "rejected"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LIMITS = {"report_id": 100, "ebp_code": 18, "order_no": 60, "invt_no": 18, "reason": 1000}


@dataclass(frozen=True)
class Decision:
    report_id: str
    ebp_code: str
    order_no: str
    invt_no: str
    status: str
    reason: str
    decided_at: str  # YYYYMMDDhhmmss, China time; may be empty except for 800


def _invalid(field: str, problem: str) -> CallError:
    return CallError(INVALID_ARGUMENT, f"{field}: {problem}")


def customs_report(decision: Decision, reporter: str, now_ms: int, skew_ms: int = 300_000) -> Output:
    """The record for ``customs.reports`` (keyed by orderNo), or INVALID_ARGUMENT naming the field.

    A decision time more than ``skew_ms`` after ``now_ms`` is refused: customs reports what
    happened, and a release dated ahead would start the return and settlement clocks late."""
    d = Decision(*(value.strip() for value in (
        decision.report_id, decision.ebp_code, decision.order_no, decision.invt_no, decision.status,
        decision.reason, decision.decided_at)))
    for name in ("ebp_code", "order_no"):
        if not getattr(d, name):
            raise _invalid(name, "required")
    for name, limit in _LIMITS.items():
        if len(getattr(d, name)) > limit:
            raise _invalid(name, f"at most {limit} characters")
    if d.status not in STATUSES:
        raise _invalid("status", f"{d.status!r} is not one of " + ", ".join(f"{c} {n}" for c, n in STATUSES.items()))
    if d.status == REJECTED and not d.reason:
        raise _invalid("reason", "required when status is 100 (rejected)")
    if d.status == RELEASED and not d.decided_at:
        raise _invalid("decided_at", "the release time is required when status is 800 (released)")
    decided_ms = _decided_ms(d.decided_at) if d.decided_at else now_ms
    if decided_ms > now_ms + skew_ms:
        raise _invalid("decided_at", f"{d.decided_at} is in the future (more than {skew_ms // 1000} s ahead of the "
                                     f"gateway's clock)")
    declaration = f"{d.ebp_code}:{d.order_no}"
    record = {"reportId": d.report_id or f"{declaration}:{d.status}", "declarationId": declaration,
              "ebpCode": d.ebp_code, "orderNo": d.order_no, "invtNo": d.invt_no or None, "status": d.status,
              "reason": d.reason or None, "decidedAt": decided_ms, "reporter": reporter}
    return Output("customs.reports", d.order_no.encode(), "sandan.CustomsReport", record)


def _decided_ms(text: str) -> int:
    if len(text) != 14 or not text.isdigit():
        raise _invalid("decided_at", f"{text[:20]!r} is not YYYYMMDDhhmmss (China time)")
    try:
        return (parse_app_time(text) - _EPOCH) // timedelta(milliseconds=1)
    except ValueError:
        raise _invalid("decided_at", f"{text!r} is not a real date and time") from None
