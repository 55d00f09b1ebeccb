"""`sandan certs add|list|revoke`: the certificate registry (signing certificates bound to
enterprise codes), kept on the compacted ``certificates`` topic that the gateway follows.
`sandan certs show-own`: sandan's own certificate (PEM), the one its signed receipts verify with.

Exit status: 0 done, 1 refused (unreadable certificate, unknown number, already revoked),
2 Kafka unreachable.
"""
from __future__ import annotations

import getpass
import json
import re
import sys
import time
from pathlib import Path

DONE, REFUSED, UNREACHABLE = 0, 1, 2
_CODE = re.compile(r"[0-9A-Za-z]{1,18}")  # customs codes: 10-character or 18-character credit codes


def add_parser(sub) -> None:
    p = sub.add_parser("certs", help="signing certificates of enterprises: add, list, revoke")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    add = verbs.add_parser("add", help="register a certificate (PEM or DER) for an enterprise")
    add.add_argument("--enterprise", "-e", required=True, help="the enterprise's customs code")
    add.add_argument("file", help="the X.509 certificate, PEM or DER")
    add.set_defaults(run=run_add)
    show = verbs.add_parser("list", help="registered certificates, one JSON line each")
    show.add_argument("--enterprise", "-e", help="only this enterprise's")
    show.set_defaults(run=run_list)
    revoke = verbs.add_parser("revoke", help="revoke a certificate: signatures made with it are refused from now on")
    revoke.add_argument("number", help="the certificate number (serial, hexadecimal)")
    revoke.set_defaults(run=run_revoke)
    for verb in (add, show, revoke):
        verb.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for Kafka")
    own = verbs.add_parser("show-own", help="print sandan's own certificate (PEM): enterprises verify sandan's "
                                            "signed receipts with it (`sandan ceb verify FILE --cert PEM`)")
    own.set_defaults(run=run_show_own)


def _book(timeout: float):
    from services.common import kafka_io, topics
    from services.common.avro import codec
    from services.common.signing.registry import TOPIC, CertificateBook
    book = CertificateBook()
    wire = codec()
    for record in kafka_io.read_all(topics.name(TOPIC), timeout_s=timeout):
        book.apply(wire.decode(record.value)[1])
    return book


def _send(*records: dict) -> None:
    from services.common import kafka_io, topics
    from services.common.avro import codec
    from services.common.signing.registry import SCHEMA, TOPIC
    kafka_io.create_topics([topics.BY_NAME[TOPIC]])
    producer = kafka_io.producer()
    try:
        sent = [producer.send(topics.name(TOPIC), key=record["number"].encode(), value=codec().encode(SCHEMA, record))
                for record in records]
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()


def _kafka(verb, args) -> int:
    from services.common import kafka_io
    try:
        return verb(args)
    except kafka_io.KafkaError as exc:
        print(f"sandan certs: Kafka at {kafka_io.bootstrap()} did not answer: {type(exc).__name__}", file=sys.stderr)
        return UNREACHABLE


def run_add(args) -> int:
    from services.common.signing.crypto import Certificate, SignatureError
    enterprise = args.enterprise.strip()
    if not _CODE.fullmatch(enterprise):
        print(f"sandan certs: --enterprise {enterprise[:30]!r} is not a customs code (1-18 letters and digits)",
              file=sys.stderr)
        return REFUSED
    try:
        certificate = Certificate.load(Path(args.file).read_bytes())
    except OSError as exc:
        print(f"sandan certs: {args.file}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return REFUSED
    except SignatureError as exc:
        print(f"sandan certs: {args.file}: {exc.message}", file=sys.stderr)
        return REFUSED

    def add(args) -> int:
        problems = register([(certificate, enterprise)], by=getpass.getuser(), timeout=args.timeout)
        if problems:
            print(f"sandan certs: {problems[0]}", file=sys.stderr)
            return REFUSED
        print(f"registered certificate {certificate.number} ({certificate.algorithm.rsplit('#', 1)[-1]}) for "
              f"{enterprise}, valid {certificate.not_before:%Y-%m-%d} to {certificate.not_after:%Y-%m-%d}")
        return DONE

    return _kafka(add, args)


def register(pairs, *, by: str, timeout: float = 10.0) -> list[str]:
    """Bind each (certificate, enterprise code) of ``pairs``, reading the registry once: what
    `certs add` does, for callers registering many (the demo's parties). Returns the refusals
    (a certificate of another enterprise, a revoked one); the others are registered."""
    from services.common.signing.registry import record_for
    book, problems, records, now = _book(timeout), [], [], int(time.time() * 1000)
    for certificate, enterprise in pairs:
        known = book.get(certificate.number)
        if known is not None and known.enterprise != enterprise:
            problems.append(f"certificate {certificate.number} is already registered for {known.enterprise}; "
                            f"revoke it there first")
        elif known is not None and known.revoked_at is not None:
            problems.append(f"certificate {certificate.number} was revoked; a revoked certificate stays revoked")
        else:
            records.append(record_for(certificate, enterprise, by=by, at_ms=now))
    if records:
        _send(*records)
    return problems


def run_show_own(args) -> int:
    from services.common.signing import own_identity
    try:
        identity = own_identity.load()
    except own_identity.IdentityError as exc:
        print(f"sandan certs: {exc}", file=sys.stderr)
        return REFUSED
    certificate = identity.certificate
    sys.stdout.write(certificate.pem.decode("ascii"))
    print(f"sandan's certificate {certificate.number} ({certificate.algorithm.rsplit('#', 1)[-1]}), valid "
          f"{certificate.not_before:%Y-%m-%d} to {certificate.not_after:%Y-%m-%d}, from {identity.source}",
          file=sys.stderr)
    return DONE


def run_list(args) -> int:
    def show(args) -> int:
        for entry in _book(args.timeout).of_enterprise(args.enterprise):
            print(json.dumps(entry.to_json(), ensure_ascii=False))
        return DONE

    return _kafka(show, args)


def run_revoke(args) -> int:
    from services.common.signing.registry import record_for
    from services.common.signing.xmldsig import normalise_number

    def revoke(args) -> int:
        entry = _book(args.timeout).get(args.number)
        if entry is None:
            print(f"sandan certs: certificate {normalise_number(args.number)} is not registered", file=sys.stderr)
            return REFUSED
        if entry.revoked_at is not None:
            print(f"sandan certs: certificate {entry.number} is already revoked", file=sys.stderr)
            return REFUSED
        now = int(time.time() * 1000)
        _send(record_for(entry.certificate, entry.enterprise, by=getpass.getuser(), at_ms=now, revoked_at=now))
        print(f"revoked certificate {entry.number} of {entry.enterprise}")
        return DONE

    return _kafka(revoke, args)
