"""order_match's engine, the same for the stream worker and for ``sandan check``.

``take`` puts one document into its bucket (pure); ``settle`` decides a declaration that
has its four documents (rules + quota + waybill registry); ``expire`` gives INCOMPLETE
verdicts to declarations past their deadline. Each returns the records to publish; the
adapters only move bytes.
"""
from __future__ import annotations

from services.common.money import ZERO
from services.common.outputs import Output
from services.order_match import matcher
from services.order_match.decide import Decision, decide, declaration_id
from services.order_match.quota import QuotaStore
from services.order_match.rates import RateTable
from services.order_match.receipts import ACCEPTED, REJECTED, receipt, receiver_of, refusal_receipt, verdict_info
from services.common.documents import MESSAGE_OF_KIND, MESSAGE_TYPES
from services.order_match import codes
from services.order_match.rules import RuleSettings
from services.order_match.verdict import INCOMPLETE, Failure, Verdict
from services.order_match.waybills import WaybillRegistry


class MatchProcessor:
    def __init__(self, *, quota: QuotaStore, waybills: WaybillRegistry, settings: RuleSettings,
                 rates: RateTable, timeout_ms: int, replay_window_ms: int = 3_600_000) -> None:
        self.quota = quota
        self.waybills = waybills
        self.settings = settings
        self.rates = rates
        self.timeout_ms = timeout_ms
        self.replay_window_ms = replay_window_ms

    def take(self, bucket: dict, doc: dict, now_ms: int) -> tuple[list[Output], list[str]]:
        """Buffer one document. Returns refusal receipts and the declarations now ready."""
        outputs: list[Output] = []
        ready: list[str] = []
        for event in matcher.apply(bucket, doc, now_ms, self.timeout_ms):
            if isinstance(event, matcher.Refusal):
                outputs.append(_receipt_output(refusal_receipt(event.document, event.code, event.message, now_ms)))
            elif isinstance(event, matcher.Ready):
                ready.append(event.ebp_code)
        return outputs, ready

    async def settle(self, bucket: dict, ebp_code: str, now_ms: int, position: str | None = None) -> list[Output]:
        decl = matcher.find_declaration(bucket, ebp_code)
        if decl is None or any(d is None for d in matcher.documents(decl)):
            return []
        order, payment, logistics, inventory = matcher.documents(decl)
        decision = await decide(order, payment, logistics, inventory, quota=self.quota, waybills=self.waybills,
                                settings=self.settings, rates=self.rates)
        outputs = self._verdict_outputs(bucket, decl, decision, now_ms)
        matcher.record_verdict(bucket, ebp_code, decision.verdict.status, now_ms, position)
        return outputs

    async def on_document(self, bucket: dict, doc: dict, now_ms: int, position: str | None = None) -> list[Output]:
        """One document; ``position`` ("topic:partition:offset") lets a replay after a crash
        emit again the decision it caused (see matcher's docstring)."""
        outputs = await self.replay(bucket, position, now_ms) if position else []
        taken, ready = self.take(bucket, doc, now_ms)
        outputs += taken
        for ebp_code in ready:
            outputs += await self.settle(bucket, ebp_code, now_ms, position)
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
                outputs += self._verdict_outputs(bucket, decl, Decision(verdict, None, None), now_ms)
            else:
                outputs += await self.settle(bucket, decl["ebpCode"], now_ms, position)
        return outputs

    def expire(self, bucket: dict, now_ms: int, *, all_open: bool = False, position: str | None = None) -> list[Output]:
        """INCOMPLETE verdicts for open declarations past their deadline (or all, offline)."""
        outputs: list[Output] = []
        matcher.drop_old_bodies(bucket, now_ms, self.replay_window_ms)
        due = [d for d in bucket["declarations"] if d["status"] == matcher.OPEN
               and any(x is None for x in matcher.documents(d))
               and (all_open or d["deadline"] <= now_ms)]
        for decl in due:
            verdict = incomplete_verdict(decl["ebpCode"], bucket["orderNo"], matcher.missing_kinds(bucket, decl))
            outputs += self._verdict_outputs(bucket, decl, Decision(verdict, None, None), now_ms)
            matcher.record_verdict(bucket, decl["ebpCode"], matcher.INCOMPLETE, now_ms, position)
        orphans = matcher.expired_waybills(bucket, now_ms if not all_open else 2**62, self.timeout_ms)
        for waybill in orphans:
            verdict = incomplete_verdict("", bucket["orderNo"], ["order", "payment", "inventory"])
            outputs += _verdict_only(verdict, now_ms)
            outputs.append(_receipt_output(receipt(waybill, REJECTED, verdict_info(verdict.status, (), verdict.missing),
                                                   verdict.failures, now_ms)))
        return outputs

    def _verdict_outputs(self, bucket: dict, decl: dict, decision: Decision, now_ms: int) -> list[Output]:
        verdict = decision.verdict
        inventory = decl["inventory"]
        record = verdict_record(verdict, decision, inventory, decl["lastAt"], now_ms)
        outputs = [Output("declarations.verdicts", verdict.order_no.encode(), "sandan.Verdict", record)]
        if verdict.verified:
            outputs.append(Output("declarations.matched", verdict.order_no.encode(), "sandan.Verdict", record))
        status = ACCEPTED if verdict.verified else REJECTED
        info = verdict_info(verdict.status, verdict.failures, verdict.missing)
        for doc in matcher.documents(decl):
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


__all__ = ["MatchProcessor", "Output", "verdict_record", "receiver_of"]
