"""`sandan gateway ...`: run the 一点通 gateway, call it, and manage its clients.

Client commands take credentials from ``--credentials FILE`` or SANDAN_GATEWAY_CREDENTIALS
(written by ``add-client --credentials-out``), else from SANDAN_GATEWAY_ADDRESS / _TOKEN /
_CA / _CLIENT_CERT / _CLIENT_KEY.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("gateway", help="the 一点通 gRPC gateway: serve, submit, subscribe, report, receipts")
    commands = p.add_subparsers(dest="gateway_command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser("serve", help="run the gateway (grpc.aio + Kafka) until SIGINT/SIGTERM")
    serve.set_defaults(run=run_serve)

    submit = commands.add_parser("submit", help="submit CEB XML files (or folders of them), one item per file")
    submit.add_argument("paths", nargs="+", metavar="FILE|DIR")
    _credentials_option(submit)
    submit.set_defaults(run=run_submit)

    for name, helptext, runner in (("subscribe", "customs: print cleared declarations as JSON lines", run_subscribe),
                                   ("receipts", "enterprise: print your receipts as JSON lines", run_receipts)):
        stream = commands.add_parser(name, help=helptext)
        stream.add_argument("--from", dest="cursor", default="", metavar="CURSOR",
                            help="resume right after the record this cursor came with")
        stream.add_argument("--latest", action="store_true", help="without a cursor: only records from now on")
        stream.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N records")
        stream.add_argument("--idle-timeout", type=int, default=None, metavar="S",
                            help="stop after S seconds without a record (default: follow forever)")
        _credentials_option(stream)
        stream.set_defaults(run=runner)
        if name == "receipts":
            stream.add_argument("--format", choices=["json", "xml"], default="json",
                                help="json: one JSON line per receipt; xml: the standard's receipt messages as files"
                                     " in --out (--limit then counts messages)")
            stream.add_argument("--out", default="", metavar="DIR",
                                help="with --format xml: folder for the files <code>_<guid>.xml, each the message"
                                     " in its envelope signed by sandan (dxp:DxpMsg; written whole: temp file +"
                                     " rename), and the stream's position (.sandan-cursor)")

    report = commands.add_parser("report", help="customs: report a decision on a cleared declaration")
    report.add_argument("--ebp-code", required=True)
    report.add_argument("--order-no", required=True)
    report.add_argument("--status", required=True, choices=["120", "399", "800", "100"],
                        help="120 accepted, 399 concluded, 800 released, 100 rejected")
    report.add_argument("--release-time", dest="decided_at", default="", metavar="YYYYMMDDhhmmss",
                        help="when it happened, China time (required for 800)")
    report.add_argument("--reason", default="", help="why (required for 100)")
    report.add_argument("--invt-no", default="")
    report.add_argument("--report-id", default="", help="idempotency key (default ebpCode:orderNo:status)")
    _credentials_option(report)
    report.set_defaults(run=run_report)

    add = commands.add_parser("add-client", help="add a client (or, with --rotate, replace one) and print the "
                                                 "token once")
    add.add_argument("--id", required=True, dest="client_id", help="client id (and its certificate's CN for mTLS)")
    add.add_argument("--rotate", action="store_true",
                     help="replace an existing client and its token (its open streams end)")
    add.add_argument("--role", required=True, choices=["enterprise", "customs"])
    add.add_argument("--code", action="append", default=[], dest="codes", metavar="CODE",
                     help="enterprise code the client acts for (repeat for several)")
    add.add_argument("--message", action="append", default=None, dest="messages", metavar="CEBnnn",
                     help="message type an enterprise client may submit (repeat; default: every input type)")
    add.add_argument("--clients", default="", metavar="FILE", help="clients file (default SANDAN_GATEWAY_CLIENTS)")
    add.add_argument("--credentials-out", default="", metavar="FILE",
                     help="also write the client's credentials file (address, token, TLS files) here")
    add.add_argument("--address", default="", help="gateway address for the credentials file")
    add.add_argument("--ca", default="", help="CA file for the credentials file")
    add.add_argument("--cert", default="", help="client certificate for the credentials file")
    add.add_argument("--key", default="", help="client key for the credentials file")
    add.set_defaults(run=run_add_client)


def _credentials_option(parser) -> None:
    parser.add_argument("--credentials", default="", metavar="FILE",
                        help="client credentials file (default SANDAN_GATEWAY_CREDENTIALS, else the settings)")


def run_serve(args) -> int:
    from services.gateway.server import ServerSettings, serve

    asyncio.run(serve(ServerSettings.from_env()))
    return 0


def _call(args, work) -> int:
    """Run ``work(client)`` and turn a gRPC error into one line on stderr and exit code 1."""
    import grpc

    from services.gateway.client import Credentials, GatewayClient

    async def main() -> int:
        async with GatewayClient(Credentials.from_env(args.credentials or None)) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except grpc.aio.AioRpcError as exc:
        print(f"sandan gateway {args.gateway_command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # credentials or TLS files missing or malformed
        print(f"sandan gateway {args.gateway_command}: {exc}", file=sys.stderr)
        return 2


def run_submit(args) -> int:
    from services.cli.publish import xml_files
    from services.gateway.proto import gateway_pb2 as pb

    files = xml_files(args.paths)
    if not files:
        print("sandan gateway submit: no XML files found", file=sys.stderr)
        return 2
    # checked before the stream opens: a file failing mid-stream would only cancel the call
    unreadable = [path for path in files if not path.is_file() or not os.access(path, os.R_OK)]
    if unreadable:
        print(f"sandan gateway submit: {unreadable[0]}: no such readable file"
              + (f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""), file=sys.stderr)
        return 2

    async def work(client) -> int:
        items, documents = Counter(), Counter()
        for path, answer in await client.submit_files(files):
            outcome = pb.Outcome.Name(answer.outcome).removeprefix("OUTCOME_").lower()
            items[outcome] += 1
            documents["accepted"] += len(answer.accepted)
            documents["refused"] += len(answer.refused)
            print(f"{outcome:8} {path}: {len(answer.accepted)} accepted, {len(answer.refused)} refused")
            for refusal in answer.refused:
                where = "message" if refusal.index < 0 else f"document {refusal.index}"
                print(f"         {where} {refusal.guid or '?'}: {refusal.return_status} {refusal.return_info}")
        print(f"{sum(items.values())} items ({', '.join(f'{k} {v}' for k, v in sorted(items.items()))}); "
              f"documents accepted {documents['accepted']}, refused {documents['refused']}")
        return 1 if documents["refused"] else 0

    return _call(args, work)


def run_subscribe(args) -> int:
    def line(m) -> dict:
        return {"cursor": m.cursor, "declarationId": m.declaration_id, "ebpCode": m.ebp_code, "orderNo": m.order_no,
                "copNo": m.cop_no, "logisticsNo": m.logistics_no, "assureCode": m.assure_code,
                "taxTotal": m.tax_total, "decidedAt": m.decided_at_ms}

    return _print_stream(args, "subscribe", line)


def run_receipts(args) -> int:
    if args.format == "xml":
        return _receipt_files(args)
    if args.out:
        print("sandan gateway receipts: --out needs --format xml", file=sys.stderr)
        return 2

    def line(m) -> dict:
        return {"cursor": m.cursor, "guid": m.guid, "message": m.message, "receiver": m.receiver,
                "documentGuid": m.document_guid, "orderNo": m.order_no, "returnStatus": m.return_status,
                "returnInfo": m.return_info, "returnTime": m.return_time}

    return _print_stream(args, "receipts", line)


def _print_stream(args, method: str, line) -> int:
    async def work(client) -> int:
        stream = getattr(client, method)(args.cursor, latest=args.latest, limit=args.limit,
                                         idle_timeout=args.idle_timeout)
        async for message in stream:
            print(json.dumps(line(message), ensure_ascii=False), flush=True)
        return 0

    return _call(args, work)


CURSOR_FILE = ".sandan-cursor"


def _receipt_files(args) -> int:
    """Each receipt message as a file an enterprise's connector can pick up. The folder keeps the
    cursor of the last file written, so a run without --from resumes where the last one stopped."""
    from services.gateway.receipt_files import root_guid, write_atomically

    if not args.out:
        print("sandan gateway receipts: --format xml needs --out DIR", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / CURSOR_FILE
    start = args.cursor or (saved.read_text(encoding="utf-8").strip() if saved.exists() else "")

    async def work(client) -> int:
        files = receipts = 0
        async for item in client.receipts(start, latest=args.latest, limit=args.limit,
                                          idle_timeout=args.idle_timeout, xml=True):
            message = item.xml
            name = f"{message.message_type}_{root_guid(message.payload) or message.receipt_guids[0]}.xml"
            # the signed envelope when the gateway sends one (`sandan ceb verify` checks it), else the message
            write_atomically(out / name, message.signed_envelope or message.payload)
            write_atomically(saved, item.cursor.encode())
            files, receipts = files + 1, receipts + len(message.receipt_guids)
            print(f"{message.message_type} to {message.receiver}: {len(message.receipt_guids)} receipt(s)"
                  f" -> {out / name}", file=sys.stderr, flush=True)
        print(f"{files} file(s), {receipts} receipt(s) in {out}; the next run resumes from {saved}", file=sys.stderr)
        return 0

    return _call(args, work)


def run_report(args) -> int:
    async def work(client) -> int:
        ack = await client.report(ebp_code=args.ebp_code, order_no=args.order_no, status=args.status,
                                  invt_no=args.invt_no, reason=args.reason, decided_at=args.decided_at,
                                  report_id=args.report_id)
        print(f"reported {args.status} for {ack.declaration_id} (report {ack.report_id})")
        return 0

    return _call(args, work)


def run_add_client(args) -> int:
    from services.common import config
    from services.gateway.client import Credentials
    from services.gateway.client_registry import ClientFileError, put_client
    from services.gateway.server import ServerSettings

    path = Path(args.clients) if args.clients else ServerSettings.from_env().clients_file
    try:
        token, replaced = put_client(path, args.client_id, args.role, args.codes, rotate=args.rotate,
                                     messages=args.messages)
    except ClientFileError as exc:
        print(f"sandan gateway add-client: {exc}", file=sys.stderr)
        return 2
    if replaced is not None:  # what it was, never its token
        print(f"replaced client {replaced.id} ({replaced.role}, codes {', '.join(sorted(replaced.codes)) or 'none'}) "
              f"and its token; a running gateway ends its open streams", file=sys.stderr)
    print(f"client {args.client_id} ({args.role}) saved in {path}", file=sys.stderr)
    if args.credentials_out:
        Credentials(address=args.address or config.get("SANDAN_GATEWAY_ADDRESS"), token=token, ca=args.ca,
                    cert=args.cert, key=args.key).save(args.credentials_out)
        print(f"credentials written to {args.credentials_out} (keep it private)", file=sys.stderr)
    else:
        print("token (shown once, only its hash is stored):", file=sys.stderr)
        print(token)
    return 0
