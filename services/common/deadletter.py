"""Dead letters: input that cannot be processed, kept with the reason and the original bytes."""
from __future__ import annotations

from services.common.clock import now_ms
from services.common.outputs import Output


def dead_letter(source: str, partition: int | None, offset: int | None, key: bytes | None, payload: bytes,
                code: str, field: str | None, reason: str, document_guid: str | None = None):
    """An output record for the ``deadletter`` topic (keyed like the input)."""
    record = {"source": source, "partition": partition, "offset": offset, "key": key, "code": code,
              "field": field, "reason": reason[:2000], "documentGuid": document_guid, "payload": payload,
              "at": now_ms()}
    return Output("deadletter", key or b"", "sandan.DeadLetter", record)
