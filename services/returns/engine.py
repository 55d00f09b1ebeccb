"""The returns service's engine: one input in, the records to publish and the quota to give
back out. The stream worker and the unit tests drive the same engine.

Two kinds of state, each keyed like the topics that feed it (so one partition owns each key):

- a *bucket* per ``orderNo`` (``bucket.py``) fed by declarations.cleared, customs.reports,
  documents.cancel, documents.refund and returns.arrivals (parcels re-keyed by order);
- a *waybill entry* per ``logisticsNo`` (``waybills.py``) fed by returns.waybills (links the
  buckets publish) and warehouse.arrivals, which re-keys parcels to their order.

documents.delivery (CEB711) needs no state: each waybill it names becomes an arrival on
warehouse.arrivals, keyed by that waybill.

Taking an input is pure (it mutates the state and returns a ``Step``); the quota releases a
step lists are the only I/O, run by ``release_quota`` with idempotent Redis scripts, so
running them again after a failure is harmless. An input naming a declaration not known yet
is held in the bucket for ``hold_ms`` and replayed when the declaration arrives, since the
topics are not read in any guaranteed order relative to each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services.common import config
from services.common.avro import codec
from services.common.money import ZERO, fen_str
from services.common.outputs import Output
from services.common.quota.contract import QuotaRelease
from services.common.quota.store import PartReleases, QuotaStore
from services.common.rates import RateTable, load_rates
from services.common.verdict import Failure
from services.returns import bucket as state
from services.common import codes
from services.returns import inputs, policy, records, waybills
from services.returns.arrivals import arrivals_from_delivery
from services.returns.policy import Windows

BUCKET_SOURCES = ("declarations.cleared", "customs.reports", "documents.cancel", "documents.refund",
                  "returns.arrivals")
WAYBILL_SOURCES = ("warehouse.arrivals", "returns.waybills", "documents.logistics_status")
DELIVERY_SOURCE = "documents.delivery"
SCHEMA_OF_SOURCE = {
    "declarations.cleared": "sandan.Verdict", "customs.reports": "sandan.CustomsReport",
    "documents.cancel": "sandan.ceb.InvtCancel", "documents.refund": "sandan.ceb.InvtRefund",
    "returns.arrivals": "sandan.WarehouseArrival", "warehouse.arrivals": "sandan.WarehouseArrival",
    "returns.waybills": "sandan.WaybillLink", "documents.delivery": "sandan.ceb.Delivery",
    "documents.logistics_status": "sandan.ceb.LogisticsStatus",
}
_ID_FIELD = {"customs.reports": "reportId", "documents.cancel": "guid", "documents.refund": "guid",
             "returns.arrivals": "arrivalId"}


@dataclass
class Step:
    outputs: list[Output] = field(default_factory=list)
    releases: list[QuotaRelease] = field(default_factory=list)

    def add(self, output: Output | None) -> None:
        if output is not None:
            self.outputs.append(output)

    def release(self, release: QuotaRelease, now_ms: int) -> None:
        """Quota given back in Redis, and published for rebuilds."""
        self.releases.append(release)
        self.outputs.append(release.output(now_ms))

    def extend(self, other: "Step") -> "Step":
        self.outputs += other.outputs
        self.releases += other.releases
        return self


@dataclass(frozen=True)
class Settings:
    windows: Windows = Windows()
    hold_ms: int = 3600 * 1000              # how long an input waits for its declaration
    retention_ms: int = 30 * 24 * 3600 * 1000  # how long a closed declaration is remembered
    # the match's rate table: a declaration's tax is split over its lines by it, so that a return
    # voids its own lines' tax (the same split as the tax bill's lines)
    rates: RateTable = field(default_factory=load_rates)

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(Windows.from_env(), config.get_int("SANDAN_RETURNS_HOLD") * 1000,
                   config.get_int("SANDAN_RETURNS_RETENTION") * 1000, load_rates())


def bucket_key(record: dict) -> str:
    return (record.get("orderNo") or "").strip()


def waybill_key(record: dict) -> str:
    return (record.get("logisticsNo") or "").strip()


async def release_quota(releases: list[QuotaRelease], quota: QuotaStore, parts: PartReleases) -> None:
    """Run a step's quota releases (each idempotent, so a retry after a failure is harmless)."""
    for r in releases:
        if r.part is None:
            await quota.release(r.declaration_id, r.buyer_key, r.year)
        else:
            await parts.release_part(r.declaration_id, r.part, r.buyer_key, r.year, r.amount)


class ReturnsEngine:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.wire = codec()

    # --- buckets (keyed by orderNo) ---------------------------------------------------------

    def take(self, bucket: dict, source: str, record: dict, payload: bytes, now_ms: int) -> Step:
        """One input of a bucket source; raises ``inputs.InputError`` for unusable input."""
        events = self._apply(bucket, source, record, now_ms)
        if any(isinstance(e, state.Unknown) for e in events):
            self._hold(bucket, source, record, payload, now_ms + self.settings.hold_ms)
            return Step()
        step = self._outputs(bucket, events, now_ms)
        if any(isinstance(e, state.Learned) for e in events):
            step.extend(self._replay(bucket, now_ms))
        return step

    def _apply(self, bucket: dict, source: str, record: dict, now_ms: int) -> list:
        windows = self.settings.windows
        if source == "declarations.cleared":
            return state.learn(bucket, inputs.declaration_from_verdict(record))
        if source == "customs.reports":
            inputs.check_report(record)
            return state.take_report(bucket, record)
        if source == "documents.cancel":
            inputs.check_cancel(record)
            return state.take_cancel(bucket, record, now_ms)
        if source == "documents.refund":
            inputs.check_refund(record)
            return state.take_refund(bucket, record, inputs.receipt_document(record), now_ms, windows,
                                     self.settings.rates)
        if source == "returns.arrivals":
            return state.take_parcel(bucket, inputs.parcel_from_arrival(record), now_ms, windows, self.settings.rates)
        raise ValueError(f"{source} is not an input of a returns bucket")

    def _hold(self, bucket: dict, source: str, record: dict, payload: bytes, until: int) -> None:
        ident = str(record[_ID_FIELD[source]])
        if not any(h["source"] == source and h["id"] == ident for h in bucket["held"]):
            bucket["held"].append({"source": source, "id": ident, "payload": payload, "until": until})

    def _replay(self, bucket: dict, now_ms: int) -> Step:
        """Inputs held for a declaration that has now arrived; customs reports first, so a
        return request held with its release report finds the declaration released."""
        held, bucket["held"] = bucket["held"], []
        step = Step()
        for entry in sorted(held, key=lambda h: h["source"] != "customs.reports"):
            _, record = self.wire.decode(entry["payload"])
            events = self._apply(bucket, entry["source"], record, now_ms)
            if any(isinstance(e, state.Unknown) for e in events):
                bucket["held"].append(entry)
            else:
                step.extend(self._outputs(bucket, events, now_ms))
        return step

    def expire(self, bucket: dict, now_ms: int) -> Step:
        """Held inputs past their hold, requests and parcels past day 45, forgotten declarations."""
        step = Step()
        for entry in [h for h in bucket["held"] if h["until"] <= now_ms]:
            bucket["held"].remove(entry)
            step.extend(self._refuse_unknown(bucket["orderNo"], entry, now_ms))
        events = state.expire(bucket, now_ms, self.settings.windows, self.settings.retention_ms)
        return step.extend(self._outputs(bucket, events, now_ms))

    def next_wake(self, bucket: dict) -> int | None:
        return state.next_wake(bucket, self.settings.windows, self.settings.retention_ms)

    def _refuse_unknown(self, order_no: str, entry: dict, now_ms: int) -> Step:
        _, record = self.wire.decode(entry["payload"])
        step = Step()
        source = entry["source"]
        if source == "documents.cancel":
            step.add(records.refusal_output(record, (Failure(
                codes.CANCEL_NOT_VERIFIED, "InvtCancel/orderNo",
                f"no verified declaration {record['ebpCode']}:{order_no} is known"),), now_ms))
        elif source == "documents.refund":
            step.add(records.refusal_output(inputs.receipt_document(record), (Failure(
                codes.RETURN_NOT_RELEASED, "InvtRefundHead/orderNo",
                f"no released declaration {record['ebpCode']}:{order_no} is known"),), now_ms))
        elif source == "returns.arrivals":
            parcel = inputs.parcel_from_arrival(record)
            step.add(records.refusal_output(records.parcel_document(parcel, order_no), (Failure(
                codes.RETURN_NOT_RELEASED, "logisticsNo",
                f"no released declaration of order {order_no} names waybill {parcel['logisticsNo']}"),), now_ms))
        return step  # a customs report for an unknown declaration answers nobody

    def _outputs(self, bucket: dict, events: list, now_ms: int) -> Step:
        step = Step()
        order_no = bucket["orderNo"]
        for event in events:
            if isinstance(event, (state.Learned, state.Released)):
                keep = state.forget_at(event.decl, self.settings.windows, self.settings.retention_ms)
                step.add(records.link_output(event.decl, order_no, keep))
            elif isinstance(event, state.CancelAccepted):
                step.extend(self._cancelled(event.decl, event.document, now_ms))
            elif isinstance(event, state.CancelRefused):
                step.add(records.refusal_output(event.document, event.failures, now_ms))
            elif isinstance(event, state.ReturnAccepted):
                last_day = policy.arrival_deadline(event.decl["releasedAt"], self.settings.windows) - 1
                deadline = policy.china_date(last_day)
                step.add(records.receipt_output(event.request["document"], "accepted", records.ACCEPTED,
                                                f"return request accepted: waiting for the goods at the returns"
                                                f" centre until {deadline}", (), now_ms))
            elif isinstance(event, state.ReturnRefused):
                step.add(records.refusal_output(event.request["document"], event.failures, now_ms))
                if event.parcel is not None:
                    step.add(records.refusal_output(records.parcel_document(event.parcel, order_no),
                                                    event.failures, now_ms))
            elif isinstance(event, state.ReturnCompleted):
                step.extend(self._completed(event.decl, event.request, event.parcel, order_no, now_ms))
            elif isinstance(event, state.ParcelRefused):
                step.add(records.refusal_output(records.parcel_document(event.parcel, order_no),
                                                (event.failure,), now_ms))
        return step

    def _cancelled(self, decl: dict, doc: dict, now_ms: int) -> Step:
        step = Step()
        if decl["taxTotal"] > ZERO:
            step.add(records.void_command(decl, records.cancel_command_id(doc["guid"]), decl["taxTotal"],
                                          f"cancelled by CEB623 {doc['guid']}", now_ms))
        if decl["buyerKey"] and decl["quotaYear"] is not None:
            step.release(QuotaRelease(decl["declarationId"], decl["buyerKey"], decl["quotaYear"]), now_ms)
        step.add(records.receipt_output(doc, "cancelled", records.CONCLUDED,
                                        f"cancelled: tax {fen_str(decl['taxTotal'])} voided, annual quota released",
                                        (), now_ms))
        return step

    def _completed(self, decl: dict, request: dict, parcel: dict, order_no: str, now_ms: int) -> Step:
        step = Step()
        guid = request["guid"]
        if request["voided"] > ZERO:
            step.add(records.void_command(decl, records.return_command_id(guid), request["voided"],
                                          f"returned by CEB625 {guid}", now_ms))
        if decl["buyerKey"] and decl["quotaYear"] is not None and request["quotaRestored"] > ZERO:
            step.release(QuotaRelease(decl["declarationId"], decl["buyerKey"], decl["quotaYear"],
                                      f"return:{guid}", request["quotaRestored"]), now_ms)
        info = (f"return completed: {state.describe_qty(policy.quantities(request['returned']))} back in stock,"
                f" tax {fen_str(request['voided'])} voided, quota {fen_str(request['quotaRestored'])} restored")
        step.add(records.receipt_output(request["document"], "completed", records.CONCLUDED, info, (), now_ms))
        step.add(records.receipt_output(records.parcel_document(parcel, order_no), "completed", records.CONCLUDED,
                                        info, (), now_ms))
        return step

    # --- waybill entries (keyed by logisticsNo) ---------------------------------------------

    def take_waybill(self, entry: dict, source: str, record: dict, payload: bytes, now_ms: int) -> Step:
        step = Step()
        if source == "returns.waybills":
            for held, order_no in waybills.learn_link(entry, record):
                step.add(records.routed_arrival(self.wire.decode(held["payload"])[1], order_no))
            return step
        if source == "documents.logistics_status":
            return self._signed_for(entry, record, now_ms)
        if source != "warehouse.arrivals":
            raise ValueError(f"{source} is not an input of a waybill entry")
        parcel = inputs.parcel_from_arrival(record)
        order_no = (record.get("orderNo") or "").strip()
        if not order_no:
            try:
                order_no = waybills.resolve(entry, parcel["logisticsCode"])
            except waybills.Ambiguous as exc:
                raise inputs.InputError("AMBIGUOUS_WAYBILL", "WarehouseArrival/logisticsCode", str(exc)) from None
        if order_no:
            step.add(records.routed_arrival(record, order_no))
        else:
            waybills.hold(entry, parcel["arrivalId"], parcel["logisticsCode"], payload,
                          now_ms + self.settings.hold_ms)
        return step

    @staticmethod
    def _signed_for(entry: dict, doc: dict, now_ms: int) -> Step:
        """A CEB513 sign-for status, answered by a CEB514 to its sender: concluded (399) for the
        waybill of a cleared declaration, refused (100, WAYBILL_UNKNOWN) for any other. It
        changes no state: the release clock starts at customs' release, not at signing."""
        logistics_no = (doc.get("logisticsNo") or "").strip()
        try:
            order_no = waybills.resolve(entry, (doc.get("logisticsCode") or "").strip())
        except waybills.Ambiguous:
            order_no = None
        if order_no:
            info = f"sign-for status {doc.get('logisticsStatus')} recorded for waybill {logistics_no}"
            return Step(outputs=[o for o in (records.receipt_output(doc, "signed", records.CONCLUDED, info, (),
                                                                    now_ms),) if o is not None])
        failure = Failure(codes.WAYBILL_UNKNOWN, "LogisticsStatus/logisticsNo",
                          f"no cleared declaration names waybill {logistics_no} of this carrier")
        return Step(outputs=[o for o in (records.refusal_output(doc, (failure,), now_ms),) if o is not None])

    def expire_waybill(self, entry: dict, now_ms: int) -> Step:
        step = Step()
        for held in waybills.expire(entry, now_ms):
            parcel = inputs.parcel_from_arrival(self.wire.decode(held["payload"])[1])
            step.add(records.refusal_output(records.parcel_document(parcel, None), (Failure(
                codes.RETURN_NOT_RELEASED, "logisticsNo",
                f"no cleared declaration names waybill {parcel['logisticsNo']}"),), now_ms))
        return step

    @staticmethod
    def take_delivery(doc: dict) -> Step:
        """A CEB711: each waybill it names, as an arrival keyed by that waybill."""
        for key in ("guid", "operatorCode"):
            if not (doc.get(key) or "").strip():
                raise inputs.InputError(inputs.INVALID_FIELD, f"DeliveryHead/{key}", f"{key} is missing or empty")
        try:
            arrivals = arrivals_from_delivery(doc)
        except ValueError:
            raise inputs.InputError(inputs.INVALID_FIELD, "DeliveryHead/appTime",
                                    "appTime must be YYYYMMDDhhmmss") from None
        return Step(outputs=[records.arrival_output(a) for a in arrivals])
