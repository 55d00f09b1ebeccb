"""Every rule and refusal code sandan answers with (DOMAIN §2, §2a, §4, §5), in one table.

Codes are plain strings so they travel unchanged through Avro records, JSON lines and
metric labels; ``CODES`` carries the one-line description and, where DOMAIN §1 names one,
the negative customs processing code a real customs system answers with. The match, the
guarantee service and the returns service all name their refusals from here.
"""
from __future__ import annotations

from dataclasses import dataclass

# The match (§2)
ORDER_TOTAL = "ORDER_TOTAL"
ORDER_LINES = "ORDER_LINES"
PAYMENT_AMOUNT = "PAYMENT_AMOUNT"
PAYER_IDENTITY = "PAYER_IDENTITY"
PAYMENT_REFERENCE = "PAYMENT_REFERENCE"
CONSIGNEE = "CONSIGNEE"
INVENTORY_PARTIES = "INVENTORY_PARTIES"
INVENTORY_BUYER = "INVENTORY_BUYER"
INVENTORY_LINES = "INVENTORY_LINES"
FIXED_VALUES = "FIXED_VALUES"
ASSURE_CODE = "ASSURE_CODE"
TAX_TOTAL = "TAX_TOTAL"
SINGLE_LIMIT = "SINGLE_LIMIT"
ANNUAL_LIMIT = "ANNUAL_LIMIT"
DUPLICATE = "DUPLICATE"
LOCKED = "LOCKED"
WAYBILL_REUSED = "WAYBILL_REUSED"
INCOMPLETE = "INCOMPLETE"
NOT_FOUND = "NOT_FOUND"  # appType 3 for a document that is not there
SUPERSEDED = "SUPERSEDED"  # arrived after a document that comes later in the order of application
APP_TIME = "APP_TIME"  # appTime later than the document's arrival (DOMAIN §2a)
NOT_SUBMITTER = "NOT_SUBMITTER"  # a change or withdrawal from another than the document's submitter
AMOUNT_RANGE = "AMOUNT_RANGE"
# Electronic tax guarantee (§4)
GUARANTEE_UNKNOWN = "GUARANTEE_UNKNOWN"
GUARANTEE_INACTIVE = "GUARANTEE_INACTIVE"
GUARANTEE_INSUFFICIENT = "GUARANTEE_INSUFFICIENT"
# Cancellation and returns (§5)
RETURN_LATE = "RETURN_LATE"
RETURN_ARRIVAL_LATE = "RETURN_ARRIVAL_LATE"
RETURN_ITEMS = "RETURN_ITEMS"
RETURN_NOT_RELEASED = "RETURN_NOT_RELEASED"

# The reader's refusal of one document's fields (§2a); APP_TIME and FIXED_VALUES above
FORMAT_CHECK = "FORMAT_CHECK"
# Cancellations and returns: the project's own codes where the public rules name none (decision)
RETURN_UNFIT = "RETURN_UNFIT"
CANCEL_NOT_VERIFIED = "CANCEL_NOT_VERIFIED"
CANCEL_RELEASED = "CANCEL_RELEASED"
CANCEL_REASON = "CANCEL_REASON"
CANCEL_REPEATED = "CANCEL_REPEATED"
APP_TYPE = "APP_TYPE"
NOT_VERIFIED = "NOT_VERIFIED"
WAYBILL_UNKNOWN = "WAYBILL_UNKNOWN"
# Guarantee account commands and tax-bill credits
INVALID_FIELD = "INVALID_FIELD"
INVALID_AMOUNT = "INVALID_AMOUNT"
UNKNOWN_ACTION = "UNKNOWN_ACTION"
ACCOUNT_EXISTS = "ACCOUNT_EXISTS"
ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
BELOW_OUTSTANDING = "BELOW_OUTSTANDING"
NOT_LATER = "NOT_LATER"
ALREADY_FROZEN = "ALREADY_FROZEN"
NOT_FROZEN = "NOT_FROZEN"
OUTSTANDING_TAX = "OUTSTANDING_TAX"
BILL_UNKNOWN = "BILL_UNKNOWN"
BILL_SETTLED = "BILL_SETTLED"
BILL_VOIDED = "BILL_VOIDED"
BILL_FULLY_VOIDED = "BILL_FULLY_VOIDED"

@dataclass(frozen=True)
class Code:
    name: str
    description: str
    customs: tuple[int, ...] = ()  # customs' own processing codes for the same refusal


_ALL = (
    Code(ORDER_TOTAL, "acturalPaid = goodsValue + freight + taxTotal - discount"),
    Code(ORDER_LINES, "each order line totalPrice = price x qty; goodsValue = sum of line totalPrice"),
    Code(PAYMENT_AMOUNT, "payment amountPaid = order acturalPaid"),
    Code(PAYER_IDENTITY, "payer name, ID type and ID number = the order's buyer; ID type 1"),
    Code(PAYMENT_REFERENCE, "payment ebpCode, payCode and payTransactionId = the order's"),
    Code(CONSIGNEE, "waybill consignee, telephone and address = the order's"),
    Code(INVENTORY_PARTIES, "inventory ebpCode/ebcCode = order's; logisticsCode/logisticsNo = waybill's"),
    Code(INVENTORY_BUYER, "inventory buyer name, ID type, ID number and telephone = the order's"),
    Code(INVENTORY_LINES, "inventory lines gnum 1..n, one per order line, same name, qty and totalPrice"),
    Code(FIXED_VALUES, "currency 142, orderType I, ieFlag I, packNo 1, tradeMode 9610 or 1210 with extras"),
    Code(ASSURE_CODE, "assureCode is the inventory's ebpCode, ebcCode, logisticsCode or agentCode"),
    Code(TAX_TOTAL, "order taxTotal = computed tax within the tolerance"),
    Code(SINGLE_LIMIT, "taxable value within the single-transaction limit", (-621005,)),
    Code(ANNUAL_LIMIT, "buyer's year-to-date taxable value within the annual limit", (-621018,)),
    Code(DUPLICATE, "a new (appType 1) document for a key that already has one", (-301010, -621004)),
    Code(LOCKED, "an order or waybill changed after its declaration was verified", (-301011,)),
    Code(WAYBILL_REUSED, "a carrier's logisticsNo names a second orderNo within 6 months"),
    Code(INCOMPLETE, "not all four documents arrived within the match timeout"),
    Code(NOT_FOUND, "an appType 3 withdrawal of a document that was never declared"),
    Code(SUPERSEDED, "a document that arrived after a change or withdrawal that comes after it (appTime, then appType)"),
    Code(APP_TIME, "appTime more than SANDAN_APP_TIME_SKEW later than the document's arrival, or not a real instant"),
    Code(NOT_SUBMITTER, "a change or withdrawal (appType 2/3), cancellation or return request from another enterprise than the submitter of the document it concerns"),
    Code(AMOUNT_RANGE, "a computed amount (taxable value, tax) beyond what a record carries (±92,233,720,368,547.75807 CNY)"),
    Code(GUARANTEE_UNKNOWN, "no tax guarantee account for the assureCode"),
    Code(GUARANTEE_INACTIVE, "the tax guarantee is expired or frozen"),
    Code(GUARANTEE_INSUFFICIENT, "the tax guarantee's available balance is below the tax"),
    Code(RETURN_LATE, "return applied for more than 30 days after release"),
    Code(RETURN_ARRIVAL_LATE, "returned goods arrived more than 45 days after release"),
    Code(RETURN_ITEMS, "return names an unknown line or more than the returnable quantity"),
    Code(RETURN_NOT_RELEASED, "return of a declaration that was not released"),
    Code(FORMAT_CHECK, "a field breaks the standard's format (customs' CEB900 format check)"),
    Code(RETURN_UNFIT, "the returned goods failed sorting at the returns-centre warehouse"),
    Code(CANCEL_NOT_VERIFIED, "cancellation of a declaration that was not verified and cleared"),
    Code(CANCEL_RELEASED, "cancellation of a declaration customs already released (apply for a return)"),
    Code(CANCEL_REASON, "cancellation without a reason"),
    Code(CANCEL_REPEATED, "the declaration was already cancelled by another CEB623"),
    Code(APP_TYPE, "only new (appType 1) cancellations and return requests are taken"),
    Code(NOT_VERIFIED, "a cleared-declarations record that is not a verified declaration"),
    Code(WAYBILL_UNKNOWN, "a waybill sign-for status (CEB513) for a waybill no cleared declaration names"),
    Code(INVALID_FIELD, "a field the command or input needs is missing or malformed"),
    Code(INVALID_AMOUNT, "an amount that is zero or negative where it must be positive"),
    Code(UNKNOWN_ACTION, "a guarantee command with an action sandan does not know"),
    Code(ACCOUNT_EXISTS, "register for an assureCode that already has an account"),
    Code(ACCOUNT_CLOSED, "a command on a closed guarantee account"),
    Code(BELOW_OUTSTANDING, "amend below the tax already deducted and not yet restored"),
    Code(NOT_LATER, "extend to a validTo that is not after the current one"),
    Code(ALREADY_FROZEN, "freeze of a frozen account"),
    Code(NOT_FROZEN, "unfreeze of an account that is not frozen"),
    Code(OUTSTANDING_TAX, "close while tax bills are still open"),
    Code(BILL_UNKNOWN, "void or settle of a declaration never deducted from this account"),
    Code(BILL_SETTLED, "void or settle of a bill that was settled already"),
    Code(BILL_VOIDED, "settle of a bill that was voided in full"),
    Code(BILL_FULLY_VOIDED, "void of a bill with nothing left to void"),
)

CODES: dict[str, Code] = {c.name: c for c in _ALL}

# The rules evaluate() decides from the four documents alone (the rest need state).
DOCUMENT_RULES = (
    ORDER_TOTAL, ORDER_LINES, PAYMENT_AMOUNT, PAYER_IDENTITY, PAYMENT_REFERENCE, CONSIGNEE,
    INVENTORY_PARTIES, INVENTORY_BUYER, INVENTORY_LINES, FIXED_VALUES, ASSURE_CODE, TAX_TOTAL,
    SINGLE_LIMIT, ANNUAL_LIMIT, AMOUNT_RANGE,
)
