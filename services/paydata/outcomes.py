"""The records the payment-data check writes: outcomes and the raw uploads (pure)."""
from __future__ import annotations

from services.common.outputs import Output
from services.paydata.compare import Mismatch
from services.paydata.sessions import Session

OUTCOMES_TOPIC, UPLOADS_TOPIC = "paydata.outcomes", "paydata.uploads"


def outcome(session: Session, kind: str, mismatches: list[Mismatch], decided_at: int,
            uploaded_at: int | None = None, cert_no: str | None = None) -> Output:
    record = {"outcomeId": f"{session.session_id}:{kind}", "sessionId": session.session_id,
              "declarationId": session.declaration_id, "ebpCode": session.ebp_code, "orderNo": session.order_no,
              "outcome": kind, "mismatches": [{"field": m.field, "message": m.message} for m in mismatches],
              "reason": session.reason, "requestedAt": session.requested_at, "deadline": session.deadline,
              "uploadedAt": uploaded_at, "certNo": cert_no, "decidedAt": decided_at}
    return Output(OUTCOMES_TOPIC, session.order_no.encode(), "sandan.PaydataOutcome", record)


def raw_upload(session: Session, text: str, received_at: int, cert_no: str) -> Output:
    record = {"sessionId": session.session_id, "declarationId": session.declaration_id,
              "ebpCode": session.ebp_code, "orderNo": session.order_no, "receivedAt": received_at,
              "certNo": cert_no, "payExInfoStr": text}
    return Output(UPLOADS_TOPIC, session.order_no.encode(), "sandan.PaydataUpload", record)
