"""Refusal codes of the returns service: DOMAIN §5's four, plus the cancellation's own.

DOMAIN §5 names RETURN_LATE, RETURN_ARRIVAL_LATE, RETURN_ITEMS and RETURN_NOT_RELEASED
(declared with the other rule codes in ``services.order_match.codes``). The public rules name
no codes for a refused cancellation, for goods that fail sorting or for an unsupported change
of a request; those below are the project's *(decision)*.
"""
from __future__ import annotations

from services.order_match.codes import RETURN_ARRIVAL_LATE, RETURN_ITEMS, RETURN_LATE, RETURN_NOT_RELEASED

CANCEL_NOT_VERIFIED = "CANCEL_NOT_VERIFIED"
CANCEL_RELEASED = "CANCEL_RELEASED"
CANCEL_REASON = "CANCEL_REASON"
CANCEL_REPEATED = "CANCEL_REPEATED"
RETURN_UNFIT = "RETURN_UNFIT"
APP_TYPE = "APP_TYPE"

DESCRIPTIONS = {
    RETURN_LATE: "return applied for more than 30 days after release",
    RETURN_ARRIVAL_LATE: "returned goods did not arrive within 45 days of release",
    RETURN_ITEMS: "return names an unknown line or more than the returnable quantity",
    RETURN_NOT_RELEASED: "return of a declaration that was not released",
    RETURN_UNFIT: "the returned goods failed sorting at the returns-centre warehouse",
    CANCEL_NOT_VERIFIED: "cancellation of a declaration that was not verified and cleared",
    CANCEL_RELEASED: "cancellation of a declaration customs already released (apply for a return)",
    CANCEL_REASON: "cancellation without a reason",
    CANCEL_REPEATED: "the declaration was already cancelled by another CEB623",
    APP_TYPE: "only new (appType 1) cancellations and return requests are taken",
}

__all__ = ["RETURN_LATE", "RETURN_ARRIVAL_LATE", "RETURN_ITEMS", "RETURN_NOT_RELEASED", "RETURN_UNFIT",
           "CANCEL_NOT_VERIFIED", "CANCEL_RELEASED", "CANCEL_REASON", "CANCEL_REPEATED", "APP_TYPE",
           "DESCRIPTIONS"]
