"""`sandan ceb parse FILE`: each business document of a CEB XML message as one JSON line.

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


def add_parser(sub) -> None:
    p = sub.add_parser("ceb", help="read China customs CEB XML messages")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    parse = verbs.add_parser("parse", help="print each business document of a CEB XML file as a JSON line")
    parse.add_argument("file", help="a CEB XML message (CEB311Message, CEB411Message ...)")
    parse.add_argument("--xsd-dir", default=None, metavar="DIR",
                       help="also validate against the official XSD in DIR (default: the CEB_XSD_DIR setting)")
    parse.set_defaults(run=run)


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


def _fail(path: str, problem: str) -> int:
    print(f"{PROG}: {path}: {problem}", file=sys.stderr)
    return 2
