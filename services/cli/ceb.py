"""`sandan ceb parse FILE`: each business document of a CEB XML message as one JSON line.
`sandan ceb verify FILE [--cert PEM]`: its XML signature, checked, in one line; a ``dxp:DxpMsg``
envelope (how sandan signs its receipts) has the envelope's signature checked, then names the CEB
message it carries.

Amounts print as decimal strings with the input's precision ("338.21"), ``gnum``/``packNo``
as numbers. Any unreadable, malformed or invalid input exits 2 with one line on stderr.
"""
from __future__ import annotations

import json
import sys
from decimal import Decimal

from services.common.ceb import CebError, parse_file
from services.common.money import plain

PROG = "sandan ceb parse"
PROG_VERIFY = "sandan ceb verify"


def add_parser(sub) -> None:
    p = sub.add_parser("ceb", help="read China customs CEB XML messages")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    parse = verbs.add_parser("parse", help="print each business document of a CEB XML file as a JSON line")
    parse.add_argument("file", help="a CEB XML message (CEB311Message, CEB411Message ...)")
    parse.add_argument("--xsd-dir", default=None, metavar="DIR",
                       help="also validate against the official XSD in DIR (default: the CEB_XSD_DIR setting)")
    parse.set_defaults(run=run)
    verify = verbs.add_parser("verify", help="check the XML signature (ds:Signature) of a CEB message or of a "
                                             "dxp:DxpMsg envelope; one line: OK with certificate number and "
                                             "algorithm (and the message an envelope carries), or the reason")
    verify.add_argument("file", help="a signed CEB message, or a signed dxp:DxpMsg envelope (sandan's receipts)")
    verify.add_argument("--cert", metavar="PEM", help="the certificate it must verify with (default: the one the "
                                                      "message carries, which proves integrity, not who signed)")
    verify.set_defaults(run=run_verify)


def run_verify(args) -> int:
    """0 verified, 1 not (reason printed), 2 unreadable input."""
    from services.common import config
    from services.common.ceb import safe_xml
    from services.common.signing.crypto import Certificate, SignatureError
    from services.common.signing import dxp
    from services.common.signing.xmldsig import verify_ceb
    try:
        with open(args.file, "rb") as handle:
            data = handle.read(config.get_int("SANDAN_CEB_MAX_BYTES") + 1)
        root = safe_xml.load(data, source=args.file, max_bytes=config.get_int("SANDAN_CEB_MAX_BYTES"))
        cert = Certificate.load(open(args.cert, "rb").read()) if args.cert else None
    except CebError as exc:
        return _fail(PROG_VERIFY, args.file, exc.detail)
    except OSError as exc:
        return _fail(PROG_VERIFY, exc.filename or args.file, exc.strerror or type(exc).__name__)
    except SignatureError as exc:
        return _fail(PROG_VERIFY, args.cert, exc.message)
    envelope = None
    try:
        if dxp.is_envelope(root):
            verified, envelope = dxp.verify(root, cert)
        else:
            verified = verify_ceb(root, cert)
    except SignatureError as exc:
        print(f"{args.file}: {exc.reason} {exc.field}: {exc.message}")
        return 1
    whose = "" if cert else " (the certificate the message carries: integrity only, not who signed)"
    carries = "" if envelope is None else (f"; envelope from {envelope.sender} to "
                                           f"{envelope.receiver_code or ','.join(envelope.receivers)} carries "
                                           f"{envelope.msg_type}Message {envelope.msg_id}")
    print(f"{args.file}: OK certificate {verified.number} {verified.algorithm.rsplit('#', 1)[-1]}{carries}{whose}")
    return 0


def run(args) -> int:
    try:
        message = parse_file(args.file, xsd_dir=args.xsd_dir)
    except CebError as exc:
        # The source is the file itself unless the problem lies elsewhere (e.g. the XSD folder).
        problem = exc.detail if exc.source == str(args.file) else str(exc)
        return _fail(args.file, problem)
    except OSError as exc:
        return _fail(args.file, exc.strerror or type(exc).__name__)
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    for document in message.documents:
        line = json.dumps(jsonable(document), ensure_ascii=False) + "\n"
        # Written as UTF-8 whatever the locale: the documents are mostly Chinese text.
        if out is not None:
            out.write(line.encode("utf-8"))
        else:
            sys.stdout.write(line)
    sys.stdout.flush()
    if out is not None:
        out.flush()
    return 0


def jsonable(value):
    """A document with Decimals as plain decimal strings, ready for ``json.dumps``."""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


def _fail(*where_problem: str) -> int:
    """``_fail(path, problem)`` or ``_fail(prog, path, problem)``: one line on stderr, exit 2."""
    prog, path, problem = where_problem if len(where_problem) == 3 else (PROG, *where_problem)
    print(f"{prog}: {path}: {problem}", file=sys.stderr)
    return 2
