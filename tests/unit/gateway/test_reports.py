"""Customs decisions: the four statuses, what each needs, the idempotency key, the release time."""
from __future__ import annotations

import pytest

from services.gateway.errors import INVALID_ARGUMENT, CallError
from services.gateway.reports import Decision, customs_report

NOW = 1_741_000_000_000


def decision(**fields) -> Decision:
    base = dict(report_id="", ebp_code="91330106MA27XK5W3B", order_no="SO1", invt_no="", status="120", reason="",
                decided_at="")
    base.update(fields)
    return Decision(**base)


def test_an_acceptance_becomes_a_customs_report_keyed_by_order():
    output = customs_report(decision(), "customs-hz", NOW)
    assert (output.topic, output.key, output.schema) == ("customs.reports", b"SO1", "sandan.CustomsReport")
    assert output.record == {"reportId": "91330106MA27XK5W3B:SO1:120", "declarationId": "91330106MA27XK5W3B:SO1",
                             "ebpCode": "91330106MA27XK5W3B", "orderNo": "SO1", "invtNo": None, "status": "120",
                             "reason": None, "decidedAt": NOW, "reporter": "customs-hz"}


def test_a_release_carries_its_release_time_in_china_time():
    output = customs_report(decision(status="800", decided_at="20250303120000", invt_no="29912025I000000001"),
                            "customs-hz", NOW)
    assert output.record["decidedAt"] == 1_740_974_400_000  # 2025-03-03 04:00:00 UTC
    assert output.record["invtNo"] == "29912025I000000001"


def test_the_callers_report_id_is_kept():
    assert customs_report(decision(report_id="R-7"), "c", NOW).record["reportId"] == "R-7"


def test_a_rejection_carries_its_reason():
    assert customs_report(decision(status="100", reason="查验不符"), "c", NOW).record["reason"] == "查验不符"


@pytest.mark.parametrize("fields, field", [
    ({"status": "800"}, "decided_at"),
    ({"status": "100"}, "reason"),
    ({"status": "500"}, "status"),
    ({"ebp_code": " "}, "ebp_code"),
    ({"order_no": ""}, "order_no"),
    ({"order_no": "N" * 61}, "order_no"),
    ({"status": "800", "decided_at": "2025-03-03"}, "decided_at"),
    ({"status": "800", "decided_at": "20250230120000"}, "decided_at"),
])
def test_incomplete_or_wrong_decisions_are_invalid_arguments_naming_the_field(fields, field):
    with pytest.raises(CallError) as err:
        customs_report(decision(**fields), "c", NOW)
    assert err.value.status == INVALID_ARGUMENT and err.value.message.startswith(f"{field}:")


def test_a_decision_dated_beyond_the_allowed_skew_is_refused_and_within_it_taken():
    # NOW is 2025-03-03 11:06:40 UTC = 19:06:40 China time
    within = customs_report(decision(decided_at="20250303191000"), "c", NOW, skew_ms=300_000)
    assert within.record["decidedAt"] == NOW + 200_000
    with pytest.raises(CallError) as refused:
        customs_report(decision(decided_at="20250303191200"), "c", NOW, skew_ms=300_000)
    assert refused.value.status == INVALID_ARGUMENT
    assert refused.value.message == "decided_at: 20250303191200 is in the future (more than 300 s ahead of the gateway's clock)"
