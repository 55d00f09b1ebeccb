"""order_match's engine, the same for the stream worker and for ``sandan check``.

``take`` puts one document into its bucket (pure); ``settle_many`` decides declarations that
have their four documents (rules + quota + waybill registry, one round trip to each store
for the lot); ``expire`` gives INCOMPLETE verdicts to declarations past their deadline. Each
returns the records to publish; the adapters only move bytes.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from services.common import config
from services.common.money import ZERO
from services.common.outputs import Output
from services.order_match import matcher
from services.common.customs_numbers import CustomsNumbers, MemoryCustomsNumbers, number_outputs
from services.order_match.decide import Decision, decide_many, declaration_id
from services.common.quota.store import QuotaStore
from services.common.rates import RateTable
from services.common.receipts import ACCEPTED, REJECTED, receipt, receiver_of, refusal_receipt, verdict_info
from services.common.documents import DECLARATION_KINDS, MESSAGE_OF_KIND, MESSAGE_TYPES, kind_of
from services.common import codes
from services.order_match.rules import RuleSettings
from services.common.verdict import INCOMPLETE, Failure, Verdict
from services.order_match.waybills import Claim, WaybillRegistry


@dataclass(frozen=True)
class Settling:
    """A declaration that has its four documents, to be decided."""
    bucket: dict
    ebp_code: str
    position: str | None = None      # the input record that completed it (see matcher's docstring)
    arrived_ms: int | None = None    # when that record entered Kafka (latency counts from there)


# Documents decoded on arrival, by wire record, so that deciding a declaration whose documents
# came recently needs no second decode (~3 KB each: about 30 MB at most).
DECODED_KEPT = 10_000


class MatchProcessor:
    def __init__(self, *, quota: QuotaStore, waybills: WaybillRegistry, settings: RuleSettings,
                 rates: RateTable, timeout_ms: int, replay_window_ms: int = 3_600_000,
                 app_time_skew_ms: int | None = None, numbers: CustomsNumbers | None = None) -> None:
        self.quota = quota
        self.numbers = numbers or MemoryCustomsNumbers()
        self.waybills = waybills
        self.settings = settings
        self.rates = rates
        self.timeout_ms = timeout_ms
        self.replay_window_ms = replay_window_ms
        self.app_time_skew_ms = (config.get_int("SANDAN_APP_TIME_SKEW") * 1000 if app_time_skew_ms is None
                                 else app_time_skew_ms)
        self._decoded: OrderedDict[bytes, dict] = OrderedDict()
        # Waybill claims of the inventories taken since the last settle (DOMAIN §2a: the first
        # orderNo whose inventory names a number claims it, whatever its declaration's verdict,
        # INCOMPLETE included); ``settle_many`` sends them before its decisions' own claims.
        self._claims: list[Claim] = []

    def forget_claims(self) -> None:
        """A batch starts afresh: claims of a failed attempt at it are taken again with its documents."""
        self._claims.clear()

    @property
    def claims_pending(self) -> bool:
        return bool(self._claims)

    def take(self, bucket: dict, doc: dict, now_ms: int, raw: bytes | None = None,
             arrived_ms: int | None = None, position: str | None = None) -> tuple[list[Output], list[str]]:
        """Buffer one document. ``raw`` is its wire record when at hand (``doc`` is then that
        record decoded, and is kept to decide its declaration without decoding it again).
        ``arrived_ms`` is when it entered Kafka (default ``now_ms``); what its arrival closed
        (``close_due``) the caller has decided first. An inventory's ``arrived_ms`` also
        chooses the quota year; without one (``sandan check``) its appTime does.
        Returns refusal receipts and the declarations now ready.
        A forward-dated document (APP_TIME) is answered and otherwise left out, as if it never came."""
        arrived = now_ms if arrived_ms is None else arrived_ms
        forward = matcher.forward_dated(doc, arrived, self.app_time_skew_ms)
        if forward is not None:
            return [_receipt_output(refusal_receipt(doc, forward.code, forward.message, now_ms))], []
        outputs: list[Output] = []
        ready: list[str] = []
        if raw is not None:
            self._decoded[raw] = doc
            if len(self._decoded) > DECODED_KEPT:
                self._decoded.popitem(last=False)
        refused = False
        for event in matcher.apply(bucket, doc, arrived, self.timeout_ms, raw, appended_ms=arrived_ms):
            if isinstance(event, matcher.Refusal):
                outputs.append(_receipt_output(refusal_receipt(event.document, event.code, event.message, now_ms)))
                refused = refused or event.document is doc
            elif isinstance(event, matcher.Ready):
                ready.append(event.ebp_code)
        if not refused and doc.get("appType") != "3" and kind_of(doc) == "inventory":
            self._claims.append(((doc.get("logisticsCode") or "").strip(), (doc.get("logisticsNo") or "").strip(),
                                 (doc.get("orderNo") or "").strip(), doc.get("appTime") or "", arrived_ms))
        return outputs, ready

    async def settle(self, bucket: dict, ebp_code: str, now_ms: int, position: str | None = None) -> list[Output]:
        return await self.settle_many([Settling(bucket, ebp_code, position)], now_ms)

    async def settle_many(self, settling: Sequence[Settling], now_ms: int) -> list[Output]:
        """Decide each (in the given order, see ``decide_many``); record and return the verdicts."""
        found = []
        for item in settling:
            decl = matcher.find_declaration(item.bucket, item.ebp_code)
            if decl is not None and matcher.complete(decl):
                found.append((item, decl, self._documents(decl)))
        claims, self._claims = self._claims, []
        decisions = await decide_many([docs for _, _, docs in found], quota=self.quota, waybills=self.waybills,
                                      settings=self.settings, rates=self.rates,
                                      arrivals=[decl.get("inventoryAt") for _, decl, _ in found], claimed=claims)
        outputs: list[Output] = []
        for (item, decl, docs), decision in zip(found, decisions):
            outputs += self._verdict_outputs(item.bucket, decl, docs, decision, now_ms, item.arrived_ms)
            matcher.record_verdict(item.bucket, item.ebp_code, decision.verdict.status, now_ms, item.position)
        return outputs

    def _documents(self, decl: dict) -> tuple:
        """The declaration's documents, decoded (those seen on arrival are not decoded again)."""
        return tuple(self._decoded.get(raw) or matcher.document(raw) if raw is not None else None
                     for raw in (decl[kind] for kind in DECLARATION_KINDS))

    async def on_document(self, bucket: dict, doc: dict, now_ms: int, position: str | None = None,
                          raw: bytes | None = None) -> list[Output]:
        """One document; ``position`` ("topic:partition:offset") lets a replay after a crash
        emit again the decision it caused (see matcher's docstring)."""
        outputs = await self.replay(bucket, position, now_ms) if position else []
        outputs += await self.close_due(bucket, now_ms, now_ms, position)
        taken, ready = self.take(bucket, doc, now_ms, raw, arrived_ms=now_ms)  # the stream's clock: now is arrival
        outputs += taken
        outputs += await self.settle_many([Settling(bucket, ebp_code, position) for ebp_code in ready], now_ms)
        return await self.number(outputs, now_ms)

    async def number(self, outputs: list[Output], now_ms: int) -> list[Output]:
        """The outputs with customs' numbers on what carries them (``customs_numbers``): one
        round trip, so adapters call it once per batch, on everything the batch produced."""
        await number_outputs(self.numbers, outputs, now_ms)
        return outputs

    async def replay(self, bucket: dict, position: str, now_ms: int) -> list[Output]:
        """The outputs of the decisions the input at ``position`` caused, emitted again.

        Deciding again is safe: the quota reservation and the waybill claim are idempotent
        per declaration, so the verdict comes out as it did.
        """
        outputs: list[Output] = []
        for decl in matcher.replayed(bucket, position):
            if decl["status"] == matcher.INCOMPLETE:
                verdict = incomplete_verdict(decl["ebpCode"], bucket["orderNo"], matcher.missing_kinds(bucket, decl))
                outputs += self._verdict_outputs(bucket, decl, matcher.documents(decl), Decision(verdict, None, None),
                                                 now_ms)
            else:
                outputs += await self.settle(bucket, decl["ebpCode"], now_ms, position)
        return outputs

    async def close_due(self, bucket: dict, due_ms: int, now_ms: int, position: str | None = None,
                        *, all_open: bool = False) -> list[Output]:
        """What a deadline closed by ``due_ms`` (a document's arrival, a tick; offline,
        ``all_open``: the input ended): ``expire`` and ``settle_late``. A declaration whose
        deadline passed before a document arrived is closed before that document is applied,
        whether or not a tick came first (decided by ``position``, that document)."""
        if not all_open and not any(d["status"] == matcher.OPEN and d["deadline"] <= due_ms
                                    for d in bucket["declarations"]):
            return []  # the common case, per document: nothing is due
        outputs = self.expire(bucket, due_ms, all_open=all_open, position=position)
        return outputs + await self.settle_late(bucket, None if all_open else due_ms, now_ms, position)

    async def settle_late(self, bucket: dict, due_ms: int | None, now_ms: int,
                          position: str | None = None) -> list[Output]:
        """Decide the declarations ``expire`` completed (``matcher.merge_at_deadline``). Apart
        from ``expire`` so that a caller can retry it alone: expire's verdicts are out already."""
        late = matcher.late_complete(bucket, due_ms)
        if not late:
            return []
        return await self.settle_many([Settling(bucket, ebp_code, position) for ebp_code in late], now_ms)

    def expire(self, bucket: dict, now_ms: int, *, all_open: bool = False, position: str | None = None) -> list[Output]:
        """INCOMPLETE verdicts for open declarations past their deadline (or all, offline). The
        order number's documents that could not join its declaration join it first when
        together they make one set (``matcher.merge_at_deadline``): complete, it is left for
        ``close_due`` to decide."""
        outputs: list[Output] = []
        matcher.drop_old_bodies(bucket, now_ms, self.replay_window_ms)
        matcher.merge_at_deadline(bucket, now_ms, all_open)
        due = [d for d in bucket["declarations"] if d["status"] == matcher.OPEN and not matcher.complete(d)
               and (all_open or d["deadline"] <= now_ms)]
        for decl in due:
            matcher.hold_unnamed_waybill(bucket, decl)
            verdict = incomplete_verdict(decl["ebpCode"], bucket["orderNo"], matcher.missing_kinds(bucket, decl))
            outputs += self._verdict_outputs(bucket, decl, matcher.documents(decl), Decision(verdict, None, None),
                                             now_ms)
            matcher.record_verdict(bucket, decl["ebpCode"], matcher.INCOMPLETE, now_ms, position)
        orphans = matcher.expired_waybills(bucket, now_ms, 0 if all_open else self.timeout_ms)
        # a waybill with the order number's declarations all decided and none naming it lacks the
        # inventory that would name it; alone, it lacks everything else too
        lacking = ["inventory"] if bucket["declarations"] else ["order", "payment", "inventory"]
        for waybill in orphans:
            verdict = incomplete_verdict("", bucket["orderNo"], lacking)
            outputs += _verdict_only(verdict, now_ms)
            outputs.append(_receipt_output(receipt(waybill, REJECTED, verdict_info(verdict.status, (), verdict.missing),
                                                   verdict.failures, now_ms)))
        return outputs

    def _verdict_outputs(self, bucket: dict, decl: dict, docs: tuple, decision: Decision, now_ms: int,
                         arrived_ms: int | None = None) -> list[Output]:
        """The verdict (on declarations.matched too when verified; the same record, so an
        adapter encodes it once) and a receipt for each of its documents."""
        verdict = decision.verdict
        inventory = docs[3]
        record = verdict_record(verdict, decision, inventory, arrived_ms or decl["lastAt"], now_ms)
        outputs = [Output("declarations.verdicts", verdict.order_no.encode(), "sandan.Verdict", record)]
        if verdict.verified:
            outputs.append(Output("declarations.matched", verdict.order_no.encode(), "sandan.Verdict", record))
        status = ACCEPTED if verdict.verified else REJECTED
        info = verdict_info(verdict.status, verdict.failures, verdict.missing)
        for doc in docs:
            if doc is not None:
                outputs.append(_receipt_output(receipt(doc, status, info, verdict.failures, now_ms)))
        return outputs


def _receipt_output(rec: dict) -> Output:
    return Output("receipts", rec["receiver"].encode(), "sandan.Receipt", rec)


def incomplete_verdict(ebp_code: str, order_no: str, missing: list[str]) -> Verdict:
    failures = tuple(Failure(codes.INCOMPLETE, MESSAGE_TYPES[MESSAGE_OF_KIND[kind]].head,
                             f"no {kind} ({MESSAGE_OF_KIND[kind]}) arrived before the match timeout")
                     for kind in missing)
    return Verdict(INCOMPLETE, failures, tuple(missing), None, None, ebp_code, order_no)


def _verdict_only(verdict: Verdict, now_ms: int) -> list[Output]:
    record = verdict_record(verdict, Decision(verdict, None, None), None, now_ms, now_ms)
    return [Output("declarations.verdicts", verdict.order_no.encode(), "sandan.Verdict", record)]


def verdict_record(verdict: Verdict, decision: Decision, inventory: dict | None, last_at: int, now_ms: int) -> dict:
    tax = verdict.tax
    return {
        "declarationId": declaration_id(verdict.ebp_code, verdict.order_no),
        "ebpCode": verdict.ebp_code, "orderNo": verdict.order_no, "status": verdict.status,
        "failures": [f.to_json_dict() for f in verdict.failures], "missing": list(verdict.missing),
        "customsTax": tax.customs if tax else ZERO, "consumptionTax": tax.consumption if tax else ZERO,
        "valueAddedTax": tax.vat if tax else ZERO, "taxTotal": tax.total if tax else ZERO,
        "taxableValue": verdict.taxable_value if verdict.taxable_value is not None else ZERO,
        "assureCode": (inventory or {}).get("assureCode"), "buyerKey": decision.buyer_key,
        "quotaYear": decision.quota_year, "inventory": inventory if verdict.verified else None,
        "lastDocumentAt": last_at, "decidedAt": now_ms,
    }


__all__ = ["MatchProcessor", "Output", "Settling", "verdict_record", "receiver_of"]
