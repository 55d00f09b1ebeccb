"""`sandan customs report` and `sandan warehouse arrive`: the returns service's outside inputs,
by hand.

Customs decisions will reach ``customs.reports`` through the gateway, and the returns-centre
warehouse reports parcels on ``warehouse.arrivals``; these commands write the same records.
Times are ``YYYYMMDDhhmmss`` in China time (default: now). Running a command twice with the
same ``--at`` publishes the same record id, which the service takes once.
"""
from __future__ import annotations

import json
import sys

DEFAULT_WAREHOUSE = "RETURNS_CENTRE"


def add_parser(sub) -> None:
    from services.returns.reports import STATUSES

    customs = sub.add_parser("customs", help="report customs decisions (release 800 ...) to sandan")
    verbs = customs.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    report = verbs.add_parser("report", help="publish a customs decision on customs.reports")
    report.add_argument("--order-no", required=True)
    report.add_argument("--ebp-code", required=True)
    report.add_argument("--status", required=True, choices=STATUSES,
                        help="120 accepted, 399 concluded, 800 released, 100 rejected")
    report.add_argument("--at", metavar="YYYYMMDDhhmmss",
                        help="time of the decision, China time (required for 800; otherwise default now)")
    report.add_argument("--invt-no", help="customs' inventory number, if assigned")
    report.add_argument("--reason", help="why (required for 100)")
    report.add_argument("--report-id", help="idempotency key (default ebpCode:orderNo:status, as the gateway's)")
    report.set_defaults(run=run_report)

    warehouse = sub.add_parser("warehouse", help="report returned parcels at the returns-centre warehouse")
    verbs = warehouse.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    arrive = verbs.add_parser("arrive", help="publish a parcel's arrival and sorting result on warehouse.arrivals")
    arrive.add_argument("--logistics-no", required=True, help="waybill number of the original declaration")
    arrive.add_argument("--logistics-code", help="carrier code (needed only if two carriers used the number)")
    arrive.add_argument("--order-no", help="the order, when the warehouse knows it")
    arrive.add_argument("--lines", default="", metavar="GNUM:QTY,...",
                        help="goods in the parcel, e.g. 1:2,2:1 (default: whatever the return request names)")
    arrive.add_argument("--sorting", required=True, choices=("fit", "unfit"), help="fit for resale or not")
    arrive.add_argument("--at", metavar="YYYYMMDDhhmmss", help="arrival time, China time (default: now)")
    arrive.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help=f"warehouse code (default {DEFAULT_WAREHOUSE})")
    arrive.add_argument("--arrival-id", help="idempotency key (default: warehouse, waybill and time)")
    arrive.set_defaults(run=run_arrive)


def _moment(text: str | None) -> int:
    from services.common.clock import now_ms
    from services.returns.policy import app_time_ms

    if not text:
        return now_ms() // 1000 * 1000
    try:
        return app_time_ms(text)
    except ValueError:
        raise ValueError(f"--at {text!r}: give the time as YYYYMMDDhhmmss, China time") from None


# the gateway's field names in its refusals, as this command's options
_OPTION_OF_FIELD = {"report_id": "--report-id", "ebp_code": "--ebp-code", "order_no": "--order-no",
                    "invt_no": "--invt-no", "status": "--status", "reason": "--reason", "decided_at": "--at"}


def run_report(args) -> int:
    """The same checks and record as a Report through the gateway (services/gateway/reports.py), so a
    decision sent both ways is one report (same default id) and neither takes what the other refuses."""
    from services.common import config
    from services.common.clock import now_ms
    from services.gateway.errors import CallError
    from services.gateway.reports import Decision, customs_report

    decision = Decision(report_id=args.report_id or "", ebp_code=args.ebp_code, order_no=args.order_no,
                        invt_no=args.invt_no or "", status=args.status, reason=args.reason or "",
                        decided_at=args.at or "")
    try:
        output = customs_report(decision, "cli", now_ms() // 1000 * 1000,
                                config.get_int("SANDAN_GATEWAY_REPORT_SKEW_SECONDS") * 1000)
    except CallError as exc:
        field, _, problem = exc.message.partition(": ")
        return _fail("customs report", f"{_OPTION_OF_FIELD.get(field, field)}: {problem}")
    return _publish("customs report", output.topic, output.schema, output.record["orderNo"], output.record)


def run_arrive(args) -> int:
    from services.returns.arrivals import arrival_record, parse_lines

    try:
        record = arrival_record(logistics_no=args.logistics_no.strip(), sorting=args.sorting,
                                arrived_at=_moment(args.at), warehouse_code=args.warehouse.strip(),
                                lines=parse_lines(args.lines), logistics_code=args.logistics_code,
                                order_no=args.order_no, arrival_id=args.arrival_id)
    except ValueError as exc:
        return _fail("warehouse arrive", str(exc))
    return _publish("warehouse arrive", "warehouse.arrivals", "sandan.WarehouseArrival", record["logisticsNo"], record)


def _publish(prog: str, short: str, schema: str, key: str, record: dict) -> int:
    from services.cli.ceb import jsonable
    from services.common import kafka_io, topics
    from services.common.avro import codec

    try:
        kafka_io.create_topics([topics.BY_NAME[short]])
        producer = kafka_io.producer()
        producer.send(topics.name(short), key=key.encode(), value=codec().encode(schema, record)).get(timeout=30)
        producer.close()
    except kafka_io.KafkaError as exc:
        return _fail(prog, f"Kafka at {kafka_io.bootstrap()} did not take the record: {exc}")
    print(json.dumps({"topic": topics.name(short), **jsonable(record)}, ensure_ascii=False))
    return 0


def _fail(prog: str, problem: str) -> int:
    print(f"sandan {prog}: {problem}", file=sys.stderr)
    return 2
