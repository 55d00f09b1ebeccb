"""One submitted item, examined: what to publish, what to accept, what to refuse.

Pure. An item is a whole CEB XML message or one document as an Avro record. Good
documents become records for their topic; documents that break the standard's field rules
are refused (each with a CEB900-style answer) and go to the dead-letter topic; an item
that cannot be read at all is refused whole and dead-lettered as received. An item
holding a document that does not name the caller as its sender, or of a message type the
caller's role may not send, is not a data error but a forbidden act: it raises
PERMISSION_DENIED and nothing of it is published. Every document published carries its
submitter (``services.common.senders``): the caller's code that it names as its sender.
With a ``SignaturePolicy`` an XML message whose signature is missing where required, or does
not verify against a certificate registered for the caller, is refused whole (code, field and
reason in its answer) and dead-lettered.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services.common import topics
from services.common.avro import SCHEMA_OF_KIND, WireError, codec
from services.common.ceb.errors import CebError, describe
from services.common.ceb.reader import parse_message
from services.common.ceb.writer import write_message
from services.common.documents import MESSAGE_TYPES
from services.common.senders import SENDER_FIELDS, SUBMITTER, named_codes
from services.common.ingest import NotAnInputMessage, document_outputs, unreadable_output
from services.common.outputs import Output
from services.common.signing.crypto import SignatureError
from services.gateway.errors import PERMISSION_DENIED, CallError
from services.gateway.signatures import SignaturePolicy, refusal_text

CEB_XML = "CEB_XML"
AVRO = "AVRO"
FORMAT_CHECK_FAILED = "-1"  # CEB900 returnStatus of a message or document that fails the format check
WHOLE_MESSAGE = -1
# Kafka refuses records over ~1 MB; an unreadable payload is kept in part, enough to diagnose it.
DEAD_LETTER_PAYLOAD_MAX = 512 * 1024

_SCHEMAS = frozenset(SCHEMA_OF_KIND.values())


@dataclass(frozen=True)
class Refused:
    guid: str
    index: int        # position in the message, WHOLE_MESSAGE for the item itself
    info: str
    message_type: str  # "CEB311" (may be empty when the payload named none)


@dataclass
class Submission:
    outputs: list[Output] = field(default_factory=list)   # documents and dead letters, to publish
    accepted: list[str] = field(default_factory=list)     # guids of the documents published
    refused: list[Refused] = field(default_factory=list)


def examine(payload_format: str, message_type: str, payload: bytes, codes: frozenset[str], source: str,
            may_send: frozenset[str] | None = None, signatures: SignaturePolicy | None = None) -> Submission:
    """What to do with one item sent by the holder of enterprise ``codes``, who may send the
    message types ``may_send`` (None: every input type). ``signatures`` None: signatures are
    not verified, only required where the standard requires them."""
    message_type = message_type.strip().upper()
    if message_type not in SENDER_FIELDS:
        known = ", ".join(sorted(SENDER_FIELDS))
        return _refuse_whole(source, payload, message_type, f"message_type {message_type!r} is not one the gateway "
                                                            f"takes ({known})")
    if may_send is not None and message_type not in may_send:
        raise CallError(PERMISSION_DENIED, f"your client may send {', '.join(sorted(may_send)) or 'no messages'}, "
                                           f"not {message_type}")
    if payload_format == CEB_XML:
        return _examine_xml(message_type, payload, codes, source, signatures)
    if payload_format == AVRO:
        return _examine_avro(message_type, payload, codes, source)
    return _refuse_whole(source, payload, message_type, "format must be CEB_XML or AVRO")


def check_sender(document: dict, message_type: str, codes: frozenset[str]) -> None:
    """PERMISSION_DENIED unless the document names one of ``codes`` in a sender field.

    A document without any sender field is let through: it fails the format check anyway
    and only reaches the dead-letter topic, marked with the caller's id.
    """
    named = [str(document.get(f) or "").strip() for f in SENDER_FIELDS[message_type]]
    named = [code for code in named if code]
    if named and not codes.intersection(named):
        fields = " or ".join(SENDER_FIELDS[message_type])
        raise CallError(PERMISSION_DENIED, f"{message_type} document {describe(document)}: {fields} must be one of "
                                           f"your enterprise codes ({', '.join(sorted(codes))})")


def _stamp(document: dict, message_type: str, codes: frozenset[str]) -> None:
    """Set the submitter: the first of the caller's codes the document names as its sender.
    An Avro record that already names one must name exactly that caller's code."""
    named = named_codes(document, message_type, codes)
    given = str(document.get(SUBMITTER) or "").strip()
    if given and given not in named:
        raise CallError(PERMISSION_DENIED, f"{message_type} document {describe(document)}: submitter {given!r} must be "
                                           f"your enterprise code that the document names in "
                                           f"{' or '.join(SENDER_FIELDS[message_type])}")
    document[SUBMITTER] = given or (named[0] if named else None)


def _examine_xml(message_type: str, payload: bytes, codes: frozenset[str], source: str,
                 signatures: SignaturePolicy | None) -> Submission:
    try:
        message = parse_message(payload, source=source, lenient=True,
                                require_signature=None if signatures is None else False)
        outputs = document_outputs(message)
    except (CebError, NotAnInputMessage) as exc:
        return _refuse_whole(source, payload, message_type, getattr(exc, "detail", str(exc)))
    if message.code != message_type:
        return _refuse_whole(source, payload, message_type, f"message_type says {message_type} but the payload is a "
                                                            f"{message.code}Message", message.guid)
    for doc in message.documents:
        check_sender(doc, message_type, codes)
        _stamp(doc, message_type, codes)  # the same dict its output carries
    for bad in message.rejected:
        check_sender(bad.raw, message_type, codes)
    if signatures is not None:
        try:
            signatures.check(message.code, message.root, codes)
        except SignatureError as exc:
            return _refuse_whole(source, payload, message_type, refusal_text(exc), message.guid)
    refused = [Refused(bad.guid or "", bad.index, f"{message.code} document {describe(bad.raw)}: "
                                                  + "; ".join(bad.errors), message.code)
               for bad in message.rejected]
    return Submission(outputs, [doc["guid"] for doc in message.documents], refused)


def _examine_avro(message_type: str, payload: bytes, codes: frozenset[str], source: str) -> Submission:
    try:
        schema, doc = codec().decode(payload)
    except WireError as exc:
        return _refuse_whole(source, payload, message_type, str(exc))
    if schema not in _SCHEMAS:
        return _refuse_whole(source, payload, message_type, f"{schema} is not a document record "
                                                            f"({', '.join(sorted(_SCHEMAS))})")
    if doc.get("message") != message_type:
        return _refuse_whole(source, payload, message_type, f"message_type says {message_type} but the record is a "
                                                            f"{doc.get('message')} document", doc.get("guid") or "")
    check_sender(doc, message_type, codes)
    _stamp(doc, message_type, codes)
    try:
        write_message(message_type, [doc])  # the same field rules the XML reader applies
    except CebError as exc:
        return _refuse_whole(source, payload, message_type, exc.detail, doc.get("guid") or "", index=0)
    spec = topics.BY_NAME[topics.TOPIC_OF_KIND[MESSAGE_TYPES[message_type].kind]]
    return Submission([Output(spec.name, topics.key_of(doc, spec), schema, doc)], [doc["guid"]], [])


def _refuse_whole(source: str, payload: bytes, message_type: str, reason: str, guid: str = "",
                  index: int = WHOLE_MESSAGE) -> Submission:
    kept = payload[:DEAD_LETTER_PAYLOAD_MAX]
    note = "" if len(kept) == len(payload) else f" (payload cut to its first {len(kept)} of {len(payload)} bytes)"
    letter = unreadable_output(source, kept, reason + note)
    return Submission([letter], [], [Refused(guid, index, reason, message_type)])
