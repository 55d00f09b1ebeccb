"""`sandan check PATH...`: the match rules offline over CEB XML files or folders."""
from __future__ import annotations

import json
import sys

from services.cli.publish import xml_files


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="decide declarations offline from CEB XML files (one JSON line each)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--year-to-date", metavar="FILE",
                   help="CSV buyerIdType,buyerIdNumber,year,amount: taxable value already used this year")
    p.set_defaults(run=run)


# The code a reader refusal carries when the reader names none: the dead-letter reason of the stream.
INVALID_DOCUMENT = "INVALID_DOCUMENT"


def field_refusal(message_code: str, bad) -> dict:
    """A document the lenient reader set aside, as a ``refused`` entry with the keys that place
    it on its declaration's line (whatever of them could be read)."""
    raw = bad.raw or {}
    return {"guid": bad.guid, "code": getattr(bad, "code", None) or INVALID_DOCUMENT, "field": first_field(bad.errors),
            "message": f"{message_code}: " + "; ".join(bad.errors),
            **{k: raw.get(k) if isinstance(raw.get(k), str) else None
               for k in ("ebpCode", "orderNo", "logisticsCode", "logisticsNo")}}


def first_field(errors: list) -> str | None:
    """The field of the first problem that names one (``Problem.field``; plain strings name none)."""
    return next((e.field for e in errors if getattr(e, "field", "")), None)


def run(args) -> int:
    from services.common.ceb.errors import CebError
    from services.common.ceb.reader import parse_file
    from services.common.documents import DECLARATION_KINDS, MESSAGE_TYPES
    from services.order_match.offline import YearToDateError, check, load_year_to_date
    from services.common.rates import RateFileError

    files = xml_files(args.paths)
    if not files:
        print("sandan check: no XML files found", file=sys.stderr)
        return 2
    documents: list[dict] = []
    refused: list[dict] = []
    for path in files:
        try:
            message = parse_file(path, lenient=True)
        except OSError as exc:
            print(f"sandan check: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except CebError as exc:  # refused as a whole (not XML, the message's own fields, >100 documents):
            # answered like a refused document of no declaration, and the other files go on
            refused.append({"guid": exc.guid, "code": exc.refusal_code, "field": first_field(exc.errors),
                            "message": str(exc)})
            continue
        if MESSAGE_TYPES[message.code].kind not in DECLARATION_KINDS:
            print(f"sandan check: {path}: skipped {message.code} (not an order, payment, waybill or inventory)",
                  file=sys.stderr)
            continue
        documents.extend(message.documents)
        refused.extend(field_refusal(message.code, bad) for bad in message.rejected)
    try:
        seed = load_year_to_date(args.year_to_date) if args.year_to_date else None
        lines = check(documents, year_to_date=seed, refused=refused)
    except OSError as exc:
        print(f"sandan check: {args.year_to_date}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (YearToDateError, RateFileError) as exc:
        print(f"sandan check: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(json.dumps(line, ensure_ascii=False))
    return 0
