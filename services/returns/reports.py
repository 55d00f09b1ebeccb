"""Customs decisions as ``sandan.CustomsReport`` records (``sandan customs report``).

The gateway will feed ``customs.reports`` from customs-side systems; until then the command
line writes them. A report's id is derived from what it says, so the same command run twice
is one report.
"""
from __future__ import annotations

STATUSES = ("120", "399", "800", "100")


def customs_report(*, order_no: str, ebp_code: str, status: str, decided_at: int, invt_no: str | None = None,
                   reason: str | None = None, reporter: str = "cli") -> dict:
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")
    return {"reportId": f"{reporter}:{ebp_code}:{order_no}:{status}:{decided_at}",
            "declarationId": f"{ebp_code}:{order_no}", "ebpCode": ebp_code, "orderNo": order_no,
            "invtNo": invt_no, "status": status, "reason": reason, "decidedAt": decided_at, "reporter": reporter}
