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
    report.add_argument("--at", metavar="YYYYMMDDhhmmss", help="time of the decision, China time (default: now)")
    report.add_argument("--invt-no", help="customs' inventory number, if assigned")
    report.add_argument("--reason")
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


def run_report(args) -> int:
    from services.returns.reports import customs_report

    try:
        record = customs_report(order_no=args.order_no.strip(), ebp_code=args.ebp_code.strip(), status=args.status,
                                decided_at=_moment(args.at), invt_no=args.invt_no, reason=args.reason)
    except ValueError as exc:
        return _fail("customs report", str(exc))
    return _publish("customs report", "customs.reports", "sandan.CustomsReport", record["orderNo"], record)


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
