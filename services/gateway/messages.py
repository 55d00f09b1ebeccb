"""From sandan records to the gateway's protobuf messages (and back for requests)."""
from __future__ import annotations

from decimal import Decimal

from services.common.clock import china_stamp
from services.common.documents import MESSAGE_TYPES
from services.common.money import fen_str
from services.gateway.kafka_bridge import LogRecord
from services.gateway.proto import gateway_pb2 as pb
from services.gateway.reports import Decision
from services.gateway.submission import FORMAT_CHECK_FAILED, Submission


def submit_answer(item_id: str, sequence: int, submission: Submission, now_ms: int) -> pb.SubmitAnswer:
    accepted, refused = submission.accepted, submission.refused
    outcome = (pb.OUTCOME_REFUSED if not accepted else pb.OUTCOME_PARTLY if refused else pb.OUTCOME_ACCEPTED)
    stamp = china_stamp(now_ms)
    return pb.SubmitAnswer(
        item_id=item_id, sequence=sequence, outcome=outcome, accepted=accepted,
        refused=[pb.Refusal(guid=r.guid, return_status=FORMAT_CHECK_FAILED, return_info=r.info, return_time=stamp,
                            ori_message_type=MESSAGE_TYPES[r.message_type].root if r.message_type in MESSAGE_TYPES
                            else r.message_type, index=r.index)
                 for r in refused])


def cleared_declaration(record: LogRecord, verdict: dict) -> pb.ClearedDeclaration:
    inventory = verdict.get("inventory") or {}
    return pb.ClearedDeclaration(
        cursor=record.cursor, declaration_id=verdict["declarationId"], ebp_code=verdict["ebpCode"],
        order_no=verdict["orderNo"], cop_no=inventory.get("copNo") or "",
        logistics_no=inventory.get("logisticsNo") or "", assure_code=verdict.get("assureCode") or "",
        tax_total=fen_str(verdict.get("taxTotal") or Decimal(0)),  # tax is rounded to the fen (DOMAIN §3)
        decided_at_ms=verdict["decidedAt"], verdict=record.value)


def receipt_record(record: LogRecord, receipt: dict) -> pb.ReceiptRecord:
    return pb.ReceiptRecord(
        cursor=record.cursor, guid=receipt["guid"], message=receipt["message"], receiver=receipt["receiver"],
        document_guid=receipt.get("documentGuid") or "", order_no=receipt.get("orderNo") or "",
        return_status=receipt["returnStatus"], return_info=receipt["returnInfo"], return_time=receipt["returnTime"],
        receipt=record.value)


def receipt_message(at_cursor: str, message, envelope: bytes = b"") -> pb.ReceiptRecord:
    """A receipt message (``services.common.ceb.receipt_xml.ReceiptMessage``) on the Receipts stream,
    with its signed envelope when there is one."""
    return pb.ReceiptRecord(cursor=at_cursor, xml=pb.ReceiptMessage(
        message_type=message.code, receiver=message.receiver, receipt_guids=list(message.guids), payload=message.xml,
        signed_envelope=envelope))


def decision(request: pb.ReportRequest) -> Decision:
    return Decision(request.report_id, request.ebp_code, request.order_no, request.invt_no, request.status,
                    request.reason, request.decided_at)


def paydata_check(record: LogRecord, outcome: dict) -> pb.PaydataCheck:
    """A payment-data check outcome (sandan.PaydataOutcome) on the PaydataChecks stream."""
    return pb.PaydataCheck(
        cursor=record.cursor, outcome_id=outcome["outcomeId"], session_id=outcome["sessionId"],
        declaration_id=outcome["declarationId"], ebp_code=outcome["ebpCode"], order_no=outcome["orderNo"],
        outcome=outcome["outcome"],
        mismatches=[pb.PaydataMismatch(field=m["field"], message=m["message"]) for m in outcome["mismatches"]],
        reason=outcome["reason"], requested_at_ms=outcome["requestedAt"], deadline_ms=outcome["deadline"],
        uploaded_at_ms=outcome.get("uploadedAt") or 0, cert_no=outcome.get("certNo") or "",
        decided_at_ms=outcome["decidedAt"], record=record.value)
