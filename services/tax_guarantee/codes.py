"""Why the guarantee service refuses a deduction or a command: plain string codes.

The three deduction codes are the verdict codes of DOMAIN §4 (shared with order_match, where
every rule code is listed); the rest answer account commands and tax-bill credits.
"""
from __future__ import annotations

from services.order_match import codes as verdict_codes

GUARANTEE_UNKNOWN = verdict_codes.GUARANTEE_UNKNOWN
GUARANTEE_INACTIVE = verdict_codes.GUARANTEE_INACTIVE
GUARANTEE_INSUFFICIENT = verdict_codes.GUARANTEE_INSUFFICIENT

INVALID_FIELD = "INVALID_FIELD"          # a field the action needs is missing or malformed
INVALID_AMOUNT = "INVALID_AMOUNT"        # an amount that is zero or negative where it must be positive
UNKNOWN_ACTION = "UNKNOWN_ACTION"
ACCOUNT_EXISTS = "ACCOUNT_EXISTS"        # register for an assureCode that already has an account
ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
BELOW_OUTSTANDING = "BELOW_OUTSTANDING"  # amend below the tax already deducted and not yet restored
NOT_LATER = "NOT_LATER"                  # extend to a validTo that is not after the current one
ALREADY_FROZEN = "ALREADY_FROZEN"
NOT_FROZEN = "NOT_FROZEN"
OUTSTANDING_TAX = "OUTSTANDING_TAX"      # close while tax bills are still open
BILL_UNKNOWN = "BILL_UNKNOWN"            # void/settle of a declaration never deducted from this account
BILL_SETTLED = "BILL_SETTLED"            # void or settle of a bill that was settled already
BILL_VOIDED = "BILL_VOIDED"              # settle of a bill that was (fully or partly) voided
BILL_FULLY_VOIDED = "BILL_FULLY_VOIDED"  # void of a bill with nothing left to void
