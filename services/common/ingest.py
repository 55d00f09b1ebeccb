"""From a parsed CEB message to Kafka records: one place for the CLI and the gateway.

Good documents go to their kind's topic keyed by their partition key; documents the
lenient reader set aside, and whole files that cannot be read, go to the dead-letter topic
with the reason. Only the data messages that enter sandan (311, 411, 511, 513, 621, 623,
625, 711) are published; receipts and tax bills are customs' output, not input.
"""
from __future__ import annotations

import json

from services.common import topics
from services.common.avro import SCHEMA_OF_KIND, WireError
from services.common.deadletter import dead_letter
from services.common.documents import MESSAGE_TYPES
from services.common.outputs import Output

INPUT_KINDS = frozenset(SCHEMA_OF_KIND)


class NotAnInputMessage(ValueError):
    """A well-formed CEB message that sandan does not take as input (a receipt, a tax bill)."""


def document_outputs(message) -> list[Output]:
    """Output records for a ParsedMessage: its documents and its set-aside documents."""
    mt = MESSAGE_TYPES[message.code]
    if mt.kind not in INPUT_KINDS:
        raise NotAnInputMessage(f"{message.code} ({mt.kind}) is not an input document; nothing to publish")
    spec = topics.BY_NAME[topics.TOPIC_OF_KIND[mt.kind]]
    schema = SCHEMA_OF_KIND[mt.kind]
    outputs = [Output(spec.name, topics.key_of(doc, spec), schema, doc) for doc in message.documents]
    for bad in message.rejected:
        payload = json.dumps(bad.raw, ensure_ascii=False, sort_keys=True).encode()
        outputs.append(dead_letter(message.source, None, bad.index, (bad.orderNo or "").encode(), payload,
                                   "INVALID_DOCUMENT", None, f"{message.code}: " + "; ".join(bad.errors), bad.guid))
    return outputs


def unreadable_output(source: str, payload: bytes, reason: str) -> Output:
    return dead_letter(source, None, None, None, payload, "UNREADABLE_MESSAGE", None, reason)


def encode(outputs: list[Output], wire) -> list[tuple[str, bytes, bytes]]:
    """(full topic name, key, value) per output; a record the wire format refuses (an amount
    beyond its range) becomes a dead letter instead of stopping the batch."""
    encoded = []
    for o in outputs:
        try:
            value = wire.encode(o.schema, o.record)
        except WireError as exc:
            payload = json.dumps(o.record, ensure_ascii=False, sort_keys=True, default=str).encode()
            o = dead_letter(o.topic, None, None, o.key, payload, "UNENCODABLE", None, str(exc), o.record.get("guid"))
            value = wire.encode(o.schema, o.record)
        encoded.append((topics.name(o.topic), o.key, value))
    return encoded
