"""The return state of one orderNo: release, cancellation, return requests, parcels, expiry.

Pure: no Kafka or Redis. The stream worker keeps one *bucket* per ``orderNo`` (the key
of every topic this state is fed from) in a changelog table. A bucket holds each cleared
declaration ``(ebpCode, orderNo)`` of that order number as a summary (lines, tax, taxable
value, buyer key, release time) with its cancellation, its return requests and the returned
parcels no request has claimed yet.

Each ``take_*`` function applies one input, mutates the bucket and returns *events*: what was
decided (a cancellation accepted, a return completed with its amounts ...). The engine turns
events into records and quota releases. Every input carries an identity (guid, reportId,
arrivalId) that the declaration remembers, so an input delivered twice yields no event the
second time. ``Unknown`` says the input names no declaration this bucket knows: the engine
holds it for a while, since topics are read in no guaranteed order relative to each other.

Only the submitter of a declaration's inventory may cancel it or ask for a return of it
(``_foreign``): anyone else's CEB623/625 is answered NOT_SUBMITTER alone (no other rule is
checked, so the answer tells nothing of the declaration's state) and changes nothing.

Matching: cancellations and return requests name their declaration by ``ebpCode`` (and
``invtNo`` once customs numbered the inventory); parcels by the waybill (``logisticsNo``, and
``logisticsCode`` when given). A parcel serves the oldest waiting request that asks for any
of the goods it holds (any request when the parcel lists no lines); it returns what was asked
for and arrived (the smaller quantity per line).
"""
from __future__ import annotations

from dataclasses import dataclass

from services.common.clock import china_stamp
from services.common.money import ZERO, plain
from services.common.rates import RateTable
from services.common.senders import same_sender, submitter_of
from services.common.verdict import Failure
from services.common import codes
from services.returns import policy
from services.returns.policy import Quantities, Windows

WAITING, COMPLETED, REFUSED = "waiting", "completed", "refused"
FIT, UNFIT = "fit", "unfit"
NEW = "1"  # appType of a new document


# --- events ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unknown:
    """The input names no declaration of this bucket (yet)."""


@dataclass(frozen=True)
class Learned:
    decl: dict


@dataclass(frozen=True)
class Released:
    decl: dict


@dataclass(frozen=True)
class CancelAccepted:
    decl: dict
    document: dict


@dataclass(frozen=True)
class CancelRefused:
    document: dict
    failures: tuple[Failure, ...]


@dataclass(frozen=True)
class ReturnAccepted:
    decl: dict
    request: dict


@dataclass(frozen=True)
class ReturnRefused:
    decl: dict
    request: dict
    failures: tuple[Failure, ...]
    parcel: dict | None = None  # the parcel that was refused with it (late, unfit)


@dataclass(frozen=True)
class ReturnCompleted:
    decl: dict
    request: dict
    parcel: dict


@dataclass(frozen=True)
class ParcelRefused:
    decl: dict | None
    parcel: dict
    failure: Failure


@dataclass(frozen=True)
class Forgotten:
    decl: dict


# --- the bucket ------------------------------------------------------------------------------

def new_bucket(order_no: str) -> dict:
    return {"orderNo": order_no, "declarations": [], "held": []}


def find(bucket: dict, ebp_code: str) -> dict | None:
    return next((d for d in bucket["declarations"] if d["ebpCode"] == ebp_code), None)


def find_by_waybill(bucket: dict, logistics_code: str | None, logistics_no: str) -> dict | None:
    return next((d for d in bucket["declarations"] if d["logisticsNo"] == logistics_no
                 and (not logistics_code or d["logisticsCode"] == logistics_code)), None)


def learn(bucket: dict, decl: dict) -> list:
    """A cleared declaration (from ``inputs.declaration_from_verdict``); known ones are kept as they are."""
    if find(bucket, decl["ebpCode"]) is not None:
        return []
    bucket["declarations"].append(decl)
    return [Learned(decl)]


def returned(decl: dict) -> Quantities:
    out: Quantities = {}
    for request in decl["requests"]:
        if request["status"] == COMPLETED:
            policy.add(out, policy.quantities(request["returned"]))
    return out


def pending(decl: dict) -> Quantities:
    out: Quantities = {}
    for request in decl["requests"]:
        if request["status"] == WAITING:
            policy.add(out, policy.quantities(request["lines"]))
    return out


def voided(decl: dict) -> tuple:
    """(tax voided, quota restored) by the declaration's completed returns so far."""
    done = [r for r in decl["requests"] if r["status"] == COMPLETED]
    return sum((r["voided"] for r in done), ZERO), sum((r["quotaRestored"] for r in done), ZERO)


def _remember(decl: dict, mark: str) -> bool:
    """True the first time an input is seen."""
    if mark in decl["seen"]:
        return False
    decl["seen"].append(mark)
    return True


def _foreign(decl: dict, doc: dict, head: str) -> Failure | None:
    """NOT_SUBMITTER when ``doc`` does not come from whoever submitted the declaration's
    inventory (records without a submitter compare the own sender fields, as order_match does).
    A declaration learned before submitters were kept names neither and is not checked."""
    if decl.get("submitter") is None and decl.get("agentCode") is None:
        return None
    inventory = {"message": "CEB621", "submitter": decl.get("submitter"), "agentCode": decl.get("agentCode")}
    if same_sender(inventory, doc):
        return None
    return Failure(codes.NOT_SUBMITTER, f"{head}/agentCode", f"declaration {decl['declarationId']} was declared by"
                                                             f" another enterprise; only its submitter may")


def _refused_by_other(decl: dict, doc: dict) -> bool:
    """True the first time this foreign document is seen (kept apart from the owner's guids)."""
    return _remember(decl, f"foreign:{submitter_of(doc)}:{doc['guid']}")


def _invt_mismatch(decl: dict, doc: dict) -> str | None:
    named = (doc.get("invtNo") or "").strip()
    if decl["invtNo"] and named and named != decl["invtNo"]:
        return f"invtNo {named} is not the inventory of declaration {decl['declarationId']} ({decl['invtNo']})"
    return None


# --- customs reports -------------------------------------------------------------------------

def take_report(bucket: dict, report: dict) -> list:
    decl = find(bucket, report["ebpCode"].strip())
    if decl is None:
        return [Unknown()]
    if not _remember(decl, f"report:{report['reportId']}"):
        return []
    if report.get("invtNo"):
        decl["invtNo"] = report["invtNo"].strip()
    if report["status"] == "800" and decl["releasedAt"] is None and decl["cancelledAt"] is None:
        decl["releasedAt"] = report["decidedAt"]
        return [Released(decl)]
    return []


# --- cancellations (CEB623) ------------------------------------------------------------------

def take_cancel(bucket: dict, doc: dict, now_ms: int) -> list:
    decl = find(bucket, doc["ebpCode"].strip())
    if decl is None:
        return [Unknown()]
    foreign = _foreign(decl, doc, "InvtCancel")
    if foreign is not None:
        return [CancelRefused(doc, (foreign,))] if _refused_by_other(decl, doc) else []
    if decl["cancelGuid"] == doc["guid"] or not _remember(decl, f"cancel:{doc['guid']}"):
        return []
    failures = []
    if doc.get("appType") != NEW:
        failures.append(Failure(codes.APP_TYPE, "InvtCancel/appType",
                                f"appType {doc.get('appType')}: only new cancellations (appType 1) are taken"))
    if not (doc.get("reason") or "").strip():
        failures.append(Failure(codes.CANCEL_REASON, "InvtCancel/reason", "a cancellation needs a reason"))
    mismatch = _invt_mismatch(decl, doc)
    if mismatch:
        failures.append(Failure(codes.CANCEL_NOT_VERIFIED, "InvtCancel/invtNo", mismatch))
    if decl["cancelledAt"] is not None:
        failures.append(Failure(codes.CANCEL_REPEATED, "InvtCancel", f"declaration {decl['declarationId']}"
                                f" was already cancelled (CEB623 {decl['cancelGuid']})"))
    elif decl["releasedAt"] is not None:
        failures.append(Failure(codes.CANCEL_RELEASED, "InvtCancel",
                                f"declaration {decl['declarationId']} was released at"
                                f" {china_stamp(decl['releasedAt'])[:14]}; apply for a return (CEB625) instead"))
    if failures:
        return [CancelRefused(doc, tuple(failures))]
    decl["cancelGuid"], decl["cancelledAt"] = doc["guid"], now_ms
    events: list = [CancelAccepted(decl, doc)]
    gone = Failure(codes.RETURN_NOT_RELEASED, "logisticsNo", f"declaration {decl['declarationId']} was cancelled")
    events += [ParcelRefused(decl, p, gone) for p in decl["parcels"]]
    decl["parcels"] = []
    return events


# --- return requests (CEB625) ----------------------------------------------------------------

def new_request(doc: dict, document: dict) -> dict:
    return {"guid": doc["guid"], "appliedAt": policy.app_time_ms(doc["appTime"]), "status": WAITING,
            "lines": [{"gnum": line["gnum"], "qty": line["qty"]} for line in doc.get("lines") or ()],
            "returned": [], "voided": ZERO, "quotaRestored": ZERO, "parcelId": None, "decidedAt": None,
            "document": document}


def request_failures(decl: dict, doc: dict, request: dict, windows: Windows) -> list[Failure]:
    """Every rule the request breaks (DOMAIN §5), not only the first."""
    failures = []
    if doc.get("appType") != NEW:
        failures.append(Failure(codes.APP_TYPE, "InvtRefundHead/appType",
                                f"appType {doc.get('appType')}: only new return requests (appType 1) are taken"))
    mismatch = _invt_mismatch(decl, doc)
    released = decl["releasedAt"]
    if mismatch:
        failures.append(Failure(codes.RETURN_NOT_RELEASED, "InvtRefundHead/invtNo", mismatch))
    elif decl["cancelledAt"] is not None:
        failures.append(Failure(codes.RETURN_NOT_RELEASED, "InvtRefundHead/invtNo",
                                f"declaration {decl['declarationId']} was cancelled, never released"))
    elif released is None:
        failures.append(Failure(codes.RETURN_NOT_RELEASED, "InvtRefundHead/invtNo",
                                f"declaration {decl['declarationId']} is not released (no customs status 800)"))
    elif request["appliedAt"] < released:
        failures.append(Failure(codes.RETURN_NOT_RELEASED, "InvtRefundHead/appTime",
                                f"applied for at {doc['appTime']}, before the release at {china_stamp(released)[:14]}"))
    elif not policy.applied_in_time(released, request["appliedAt"], windows):
        day = policy.day_after_release(released, request["appliedAt"])
        failures.append(Failure(codes.RETURN_LATE, "InvtRefundHead/appTime",
                                f"applied for on day {day} after the release on {policy.china_date(released)};"
                                f" at most day {windows.apply_days}"))
    failures += policy.item_failures(policy.quantities(decl["lines"]), returned(decl), pending(decl),
                                     request["lines"])
    return failures


def take_refund(bucket: dict, doc: dict, document: dict, now_ms: int, windows: Windows, rates: RateTable) -> list:
    decl = find(bucket, doc["ebpCode"].strip())
    if decl is None:
        return [Unknown()]
    foreign = _foreign(decl, doc, "InvtRefundHead")
    if foreign is not None:
        if not _refused_by_other(decl, doc):
            return []
        request = {**new_request(doc, document), "status": REFUSED, "decidedAt": now_ms}  # not kept
        return [ReturnRefused(decl, request, (foreign,))]
    if any(r["guid"] == doc["guid"] for r in decl["requests"]):
        return []
    request = new_request(doc, document)
    failures = request_failures(decl, doc, request, windows)
    decl["requests"].append(request)
    if failures:
        request["status"], request["decidedAt"] = REFUSED, now_ms
        return [ReturnRefused(decl, request, tuple(failures))]
    return [ReturnAccepted(decl, request)] + _match_parcels(decl, now_ms, windows, rates)


# --- parcels at the returns-centre warehouse -------------------------------------------------

def take_parcel(bucket: dict, parcel: dict, now_ms: int, windows: Windows, rates: RateTable) -> list:
    decl = find_by_waybill(bucket, parcel.get("logisticsCode"), parcel["logisticsNo"])
    if decl is None:
        return [Unknown()]
    if not _remember(decl, f"parcel:{parcel['arrivalId']}"):
        return []
    if decl["cancelledAt"] is not None:
        return [ParcelRefused(decl, parcel, Failure(codes.RETURN_NOT_RELEASED, "logisticsNo",
                                                    f"declaration {decl['declarationId']} was cancelled"))]
    decl["parcels"].append(parcel)
    events = _match_parcels(decl, now_ms, windows, rates)
    if parcel in decl["parcels"]:  # no request took it
        refusal = _unclaimable(decl, parcel, windows)
        if refusal is not None:
            decl["parcels"].remove(parcel)
            events.append(ParcelRefused(decl, parcel, refusal))
    return events


def _unclaimable(decl: dict, parcel: dict, windows: Windows) -> Failure | None:
    released = decl["releasedAt"]
    if released is not None and not policy.arrived_in_time(released, parcel["arrivedAt"], windows):
        return _late_arrival(released, parcel, windows)
    if policy.fully_returned(policy.quantities(decl["lines"]), returned(decl)):
        return Failure(codes.RETURN_ITEMS, "lines", f"every line of {decl['declarationId']} is already returned")
    return None


def _late_arrival(released: int, parcel: dict, windows: Windows) -> Failure:
    day = policy.day_after_release(released, parcel["arrivedAt"])
    return Failure(codes.RETURN_ARRIVAL_LATE, "arrivedAt",
                   f"goods arrived on day {day} after the release on {policy.china_date(released)};"
                   f" at most day {windows.arrival_days}")


def _request_for(decl: dict, parcel: dict) -> dict | None:
    holds = {line["gnum"] for line in parcel["lines"] if line["qty"] > ZERO}
    waiting = sorted((r for r in decl["requests"] if r["status"] == WAITING), key=lambda r: (r["appliedAt"], r["guid"]))
    for request in waiting:
        if not parcel["lines"] or holds & {line["gnum"] for line in request["lines"]}:
            return request
    return None


def _match_parcels(decl: dict, now_ms: int, windows: Windows, rates: RateTable) -> list:
    events: list = []
    for parcel in sorted(decl["parcels"], key=lambda p: (p["arrivedAt"], p["arrivalId"])):
        request = _request_for(decl, parcel)
        if request is not None:
            decl["parcels"].remove(parcel)
            events.append(_settle(decl, request, parcel, now_ms, windows, rates))
    return events


def _returning(request: dict, parcel: dict) -> Quantities:
    asked = policy.quantities(request["lines"])
    if not parcel["lines"]:
        return asked
    arrived = policy.quantities(parcel["lines"])
    return {g: min(q, arrived[g]) for g, q in asked.items() if arrived.get(g, ZERO) > ZERO}


def _settle(decl: dict, request: dict, parcel: dict, now_ms: int, windows: Windows, rates: RateTable):
    """The goods of a waiting request arrived: complete the return or refuse it."""
    request["parcelId"], request["decidedAt"] = parcel["arrivalId"], now_ms
    if not policy.arrived_in_time(decl["releasedAt"], parcel["arrivedAt"], windows):
        request["status"] = REFUSED
        return ReturnRefused(decl, request, (_late_arrival(decl["releasedAt"], parcel, windows),), parcel)
    if parcel["sorting"] != FIT:
        request["status"] = REFUSED
        return ReturnRefused(decl, request, (Failure(codes.RETURN_UNFIT, "sorting",
                                                     "the goods failed sorting: shipped out of the zone"),), parcel)
    returning = _returning(request, parcel)
    tax_before, quota_before = voided(decl)
    refund = policy.refund_amounts(decl["lines"], returned(decl), returning, tax_total=decl["taxTotal"],
                                   taxable_value=decl["taxableValue"], voided_before=tax_before,
                                   restored_before=quota_before, rates=rates)
    request.update(status=COMPLETED, voided=refund.tax, quotaRestored=refund.quota,
                   returned=[{"gnum": g, "qty": q} for g, q in sorted(returning.items())])
    return ReturnCompleted(decl, request, parcel)


# --- time ------------------------------------------------------------------------------------

def forget_at(decl: dict, windows: Windows, retention_ms: int) -> int:
    """When a declaration's return state may go: no return can happen after that."""
    if decl["cancelledAt"] is not None:
        return decl["cancelledAt"] + retention_ms
    if decl["releasedAt"] is not None:
        return policy.arrival_deadline(decl["releasedAt"], windows) + retention_ms
    return decl["clearedAt"] + retention_ms


def expire(bucket: dict, now_ms: int, windows: Windows, retention_ms: int) -> list:
    """Requests and parcels past day 45 are refused; declarations past retention are forgotten."""
    events: list = []
    for decl in list(bucket["declarations"]):
        released = decl["releasedAt"]
        if released is not None and now_ms >= policy.arrival_deadline(released, windows):
            deadline = policy.china_date(policy.arrival_deadline(released, windows) - 1)
            for request in decl["requests"]:
                if request["status"] == WAITING:
                    request["status"], request["decidedAt"] = REFUSED, now_ms
                    events.append(ReturnRefused(decl, request, (Failure(
                        codes.RETURN_ARRIVAL_LATE, "arrivedAt",
                        f"the goods did not arrive by day {windows.arrival_days} after the release ({deadline})"),)))
            for parcel in decl["parcels"]:
                events.append(ParcelRefused(decl, parcel, Failure(
                    codes.RETURN_LATE, "logisticsNo",
                    f"no return request named these goods by day {windows.arrival_days} after the release")))
            decl["parcels"] = []
        if forget_at(decl, windows, retention_ms) <= now_ms:
            never = Failure(codes.RETURN_NOT_RELEASED, "logisticsNo",
                            f"declaration {decl['declarationId']} was not released")
            events += [ParcelRefused(decl, p, never) for p in decl["parcels"]]
            bucket["declarations"].remove(decl)
            events.append(Forgotten(decl))
    return events


def next_wake(bucket: dict, windows: Windows, retention_ms: int) -> int | None:
    wakes = [h["until"] for h in bucket["held"]]
    for decl in bucket["declarations"]:
        wakes.append(forget_at(decl, windows, retention_ms))
        waiting = decl["parcels"] or any(r["status"] == WAITING for r in decl["requests"])
        if decl["releasedAt"] is not None and waiting:
            wakes.append(policy.arrival_deadline(decl["releasedAt"], windows))
    return min(wakes) if wakes else None


def parcels_waiting(bucket: dict) -> int:
    """Returned parcels in the warehouse that no request has claimed (for the gauge)."""
    return sum(len(d["parcels"]) for d in bucket["declarations"]) + \
        sum(1 for h in bucket["held"] if h["source"] == "returns.arrivals")


def describe_qty(quantities: Quantities) -> str:
    return ", ".join(f"gnum {g} x {plain(q.normalize())}" for g, q in sorted(quantities.items()))
