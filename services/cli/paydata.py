"""`sandan paydata serve|request|platform`: customs' real-time payment-data check (公告2018年第179号).

``serve`` runs the paydata service (a stream worker plus the realTimeDataUpload endpoint);
``request`` asks for one declaration's payment data now (paydata.requests); ``platform
add|remove|list`` keeps the registry of platforms' platDataOpen URLs (the compacted
paydata.platforms, which the service copies into Redis).
"""
from __future__ import annotations

import getpass
import json
import sys
import uuid
from urllib.parse import urlparse


def add_parser(sub) -> None:
    p = sub.add_parser("paydata", help="customs' real-time payment-data check (179): serve, request, platform")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    serve = verbs.add_parser("serve", help="run the paydata service (worker + realTimeDataUpload endpoint)")
    serve.set_defaults(run=run_serve)
    request = verbs.add_parser("request", help="ask the platform for a declaration's payment data now")
    request.add_argument("declaration", metavar="ORDER_NO|EBPCODE:ORDER_NO",
                         help="an orderNo (every platform that declared it) or one declaration ebpCode:orderNo")
    request.add_argument("--request-id", help="idempotency key (default: a new one)")
    request.set_defaults(run=run_request)
    platform = verbs.add_parser("platform", help="platforms' platDataOpen URLs")
    pverbs = platform.add_subparsers(dest="action", metavar="ACTION")
    pverbs.required = True
    add = pverbs.add_parser("add", help="register (or change) a platform's platDataOpen URL")
    add.add_argument("code", metavar="CODE", help="the platform's ebpCode")
    add.add_argument("url", metavar="URL", help="http(s) URL of its platDataOpen")
    add.set_defaults(run=run_platform_add)
    remove = pverbs.add_parser("remove", help="forget a platform's URL")
    remove.add_argument("code", metavar="CODE")
    remove.set_defaults(run=run_platform_remove)
    listing = pverbs.add_parser("list", help="the registered URLs, one JSON line each (from paydata.platforms)")
    listing.set_defaults(run=run_platform_list)


def run_serve(args) -> int:
    import asyncio

    from services.common import config, garbage_collector, kafka_io, metrics
    from services.paydata.app import serve

    kafka_io.create_topics()
    metrics.serve(config.get_int("SANDAN_PAYDATA_METRICS_PORT"))
    garbage_collector.tune()
    asyncio.run(serve())
    return 0


def run_request(args) -> int:
    from services.common.clock import now_ms

    ebp_code, _, order_no = args.declaration.rpartition(":")
    if not order_no.strip():
        return _fail("paydata request", "give an orderNo or ebpCode:orderNo")
    record = {"requestId": args.request_id or uuid.uuid4().hex, "orderNo": order_no.strip(),
              "ebpCode": ebp_code.strip() or None, "requestedBy": getpass.getuser(), "requestedAt": now_ms()}
    return _publish("paydata request", "paydata.requests", "sandan.PaydataRequest", record["orderNo"], record)


def valid_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def run_platform_add(args) -> int:
    if not valid_url(args.url):
        return _fail("paydata platform add", f"URL {args.url!r} is not an http(s) URL")
    return _platform(args.code, args.url)


def run_platform_remove(args) -> int:
    return _platform(args.code, None)


def _platform(code: str, url: str | None) -> int:
    from services.common.clock import now_ms

    if not code.strip():
        return _fail("paydata platform", "CODE is empty")
    record = {"ebpCode": code.strip(), "url": url, "changedAt": now_ms(), "changedBy": getpass.getuser()}
    return _publish("paydata platform", "paydata.platforms", "sandan.PaydataPlatform", record["ebpCode"], record)


def run_platform_list(args) -> int:
    from services.common import kafka_io, topics
    from services.common.avro import codec

    wire, latest = codec(), {}
    try:
        for message in kafka_io.read_all(topics.name("paydata.platforms")):
            record = wire.decode(message.value)[1]
            latest[record["ebpCode"]] = record
    except kafka_io.KafkaError as exc:
        return _fail("paydata platform list", f"Kafka at {kafka_io.bootstrap()} did not answer: {exc}")
    for code in sorted(latest):
        if latest[code]["url"]:
            print(json.dumps({"ebpCode": code, "url": latest[code]["url"]}))
    return 0


def _publish(prog: str, short: str, schema: str, key: str, record: dict) -> int:
    from services.common import kafka_io, topics
    from services.common.avro import codec

    try:
        kafka_io.create_topics([topics.BY_NAME[short]])
        producer = kafka_io.producer()
        producer.send(topics.name(short), key=key.encode(), value=codec().encode(schema, record)).get(timeout=30)
        producer.close()
    except kafka_io.KafkaError as exc:
        return _fail(prog, f"Kafka at {kafka_io.bootstrap()} did not take the record: {exc}")
    print(json.dumps({"topic": topics.name(short), **record}, ensure_ascii=False))
    return 0


def _fail(prog: str, problem: str) -> int:
    print(f"sandan {prog}: {problem}", file=sys.stderr)
    return 2
