"""Receipts as the standard's XML messages: what one Kafka read brought, grouped per receiver and
kind (``services.common.ceb.receipt_xml``), each message with the cursor to resume after it.

Messages are handed out in the order of the first receipt inside them. A message's cursor is
the cursor of the last record of the longest run, from the start of the read, of records
that are delivered (in this message or an earlier one) or not the caller's: resuming there
never skips a receipt, and may repeat some of a later message (readers de-duplicate by guid).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common.ceb.receipt_xml import ReceiptMessage, receipt_messages
from services.gateway.kafka_bridge import LogRecord

log = logging.getLogger("sandan.gateway")
MAX_PER_MESSAGE = 100  # business documents per CEB message (DOMAIN §1)


def xml_messages(batch: Sequence[LogRecord], mine: Sequence[tuple[int, dict]], before: str
                 ) -> list[tuple[str, ReceiptMessage]]:
    """(cursor, message) for the caller's receipts ``mine`` — (index in ``batch``, receipt) — of one
    read; ``before`` is the cursor the stream stood at before this read."""
    at: dict[str, list[int]] = {}
    for i, receipt in mine:
        at.setdefault(receipt["guid"], []).append(i)
    messages = sorted(_messages([receipt for _, receipt in mine]),
                      key=lambda m: min(i for g in m.guids for i in at[g]))
    waiting = {i for m in messages for g in m.guids for i in at[g]}  # a receipt left out is not waited for
    done = 0  # records batch[:done] are delivered or not waited for
    found = []
    for message in messages:
        waiting.difference_update(i for g in message.guids for i in at[g])
        while done < len(batch) and done not in waiting:
            done += 1
        found.append((batch[done - 1].cursor if done else before, message))
    return found


def _messages(receipts: list[dict]) -> list[ReceiptMessage]:
    """The messages of ``receipts``; a receipt that cannot be written as XML is left out (and
    logged) rather than holding back the others, which then go one to a message."""
    try:
        return receipt_messages(receipts, max_per_message=MAX_PER_MESSAGE)
    except Exception:  # noqa: BLE001 - find the receipt at fault: write them one by one
        written = []
        for receipt in receipts:
            try:
                written += receipt_messages([receipt], max_per_message=MAX_PER_MESSAGE)
            except Exception as exc:  # noqa: BLE001 - one bad receipt must not end the stream
                log.warning("receipt %s (%s to %s) cannot be written as CEB XML, left out: %s", receipt.get("guid"),
                            receipt.get("message"), receipt.get("receiver"), exc)
        return written
