"""`sandan platform serve-paydata`: a platform's reference responder to customs' payment-data check."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("platform", help="what a platform runs beside its shop")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    serve = verbs.add_parser("serve-paydata", help="answer customs' platDataOpen and upload signed payment data")
    serve.add_argument("--key", required=True, type=Path, help="PEM private key the uploads are signed with")
    serve.add_argument("--cert", required=True, type=Path, help="PEM/DER certificate of that key (its number is certNo)")
    serve.add_argument("--data", required=True, type=Path,
                       help="JSON-lines file of the platform's raw payment data (README: Payment-data checks)")
    serve.add_argument("--delay", type=float, default=0.0,
                       help="seconds to wait before looking the data up (drills: a slow platform)")
    serve.set_defaults(run=run_serve)


def run_serve(args) -> int:
    import asyncio

    from services.common.signing.crypto import SignatureError
    from services.paydata_platform.app import responder, serve

    try:
        r = responder(args.key, args.cert, args.data, args.delay)
    except (OSError, SignatureError) as exc:
        raise SystemExit(f"sandan platform serve-paydata: key or certificate unreadable: {exc}") from None
    from services.common import config

    host, _, port = config.get("SANDAN_PLATFORM_PAYDATA_LISTEN").rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"setting SANDAN_PLATFORM_PAYDATA_LISTEN: {port!r} is not host:port")
    host, port = host or "127.0.0.1", int(port)
    asyncio.run(serve(r, host, port))
    return 0
