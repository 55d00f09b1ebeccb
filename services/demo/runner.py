"""`make demo`: the main job end to end on the local Kafka and Redis.

Generates a realistic mix of declarations (mostly good, a share with each kind of broken
rule, some missing a document, some documents delivered twice), writes them as CEB XML,
sends them in, runs the services as real processes, waits for every declaration's verdict
and prints a report whose last line is one JSON object.
"""
from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from decimal import Decimal
from pathlib import Path

from services.common import config, kafka_io, topics
from services.tools import runs
from services.common.avro import codec
from services.common.ceb import xsd
from services.common.ceb.writer import write_message
from services.common.documents import MESSAGE_OF_KIND, kind_of
from services.tools.generator import generate
from services.demo import parties as parties_mod
from services.demo.ports import free_port
from services.demo import paydata_checks, returns_stage, scrape, signatures_stage
from services.tools.signing_parties import SigningParties
from services.demo.receipts_desk import ReceiptsDesk
from services.demo.processes import ServiceProcess, service_env
from services.gateway.client import GatewayClient
from services.demo.progress import Progress
from services.order_match.decide import declaration_id


@dataclass
class DemoPlan:
    count: int = 400
    fault_share: Decimal = Decimal("0.1")
    incomplete_share: Decimal = Decimal("0.03")
    duplicate_share: Decimal = Decimal("0.1")
    seed: int = 2026
    match_timeout_s: int = 15
    wait_s: int = 300


def _share(total: int, share: Decimal) -> int:
    return int(Decimal(total) * share)


def build_documents(plan: DemoPlan):
    """The sets, the documents to send (some dropped, some twice, shuffled) and the expected statuses."""
    rnd = random.Random(plan.seed)
    sets = generate(plan.count, buyers=max(plan.count // 3, 1), fault_share=plan.fault_share, seed=plan.seed)
    incomplete = set(rnd.sample(range(plan.count), _share(plan.count, plan.incomplete_share)))
    docs, expected = [], {}
    for i, s in enumerate(sets):
        chosen = list(s.documents)
        if i in incomplete:
            chosen.pop(rnd.randrange(4))
        expected[declaration_id(s.order["ebpCode"], s.order["orderNo"])] = \
            "incomplete" if i in incomplete else s.expected_status
        docs += [copy.deepcopy(d) for d in chosen]
    docs += [copy.deepcopy(rnd.choice(docs)) for _ in range(_share(len(docs), plan.duplicate_share))]
    rnd.shuffle(docs)
    return sets, docs, expected


def _unsigned(xml: bytes) -> bytes:
    return xml


def write_inbox(docs: list[dict], inbox: Path, sign=_unsigned) -> list[Path]:
    """CEB XML messages in arrival order: each run of 100 arrivals becomes one message per kind,
    each through ``sign`` (its sender's signature)."""
    inbox.mkdir(parents=True, exist_ok=True)
    files = []
    for start in range(0, len(docs), 100):
        by_kind: dict[str, list[dict]] = {}
        for doc in docs[start:start + 100]:
            by_kind.setdefault(kind_of(doc), []).append(doc)
        for kind, batch in by_kind.items():
            code = MESSAGE_OF_KIND[kind]
            path = inbox / f"{len(files) + 1:05d}_{code}.xml"
            path.write_bytes(sign(write_message(code, batch)))
            files.append(path)
    return files


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def wait_serving(address: str, service: ServiceProcess, timeout_s: float = 60) -> None:
    """Until the gateway's standard health service says SERVING."""
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if not service.alive() or time.monotonic() > deadline:
                raise SystemExit(f"sandan demo: the gateway did not start; see {service.log}")
            await asyncio.sleep(0.5)


DEMO_PREFIX = r"demo\d{14}-"


def forget_earlier_demos(prefix: str, say) -> None:
    """Each demo leaves its topics to be looked at, until the next demo deletes them."""
    earlier = runs.earlier_runs(DEMO_PREFIX, keep=prefix)
    if earlier:
        removed = [runs.forget(p) for p in earlier]
        say(f"  deleted the topics and keys of {len(earlier)} earlier demo run(s):"
            f" {sum(r['topics'] for r in removed)} topics, {sum(r['redis_keys'] for r in removed)} Redis keys")


def run(plan: DemoPlan, out=sys.stdout) -> dict:
    return asyncio.run(_run(plan, out))


async def _run(plan: DemoPlan, out) -> dict:
    started = time.monotonic()
    prefix = f"demo{time.strftime('%Y%m%d%H%M%S')}-"
    os.environ["SANDAN_TOPIC_PREFIX"] = prefix
    run_dir = Path(config.get("SANDAN_LOCAL_DIR")) / "demo" / prefix.rstrip("-")
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731 - a local shorthand
    say(f"sandan demo: run {prefix.rstrip('-')}, {plan.count} declarations; logs and files in {run_dir}")
    await asyncio.to_thread(forget_earlier_demos, prefix, say)
    await asyncio.to_thread(kafka_io.create_topics)
    # every party's certificate in the registry before the gateway reads it at its start
    signers, signatures = SigningParties(signatures_stage.parties_folder()), signatures_stage.SignatureReport()
    await asyncio.to_thread(signatures_stage.register_parties, signers, signatures)
    address = f"127.0.0.1:{free_port()}"
    parties, customs = parties_mod.gateway_clients(run_dir / "gateway-clients.json", address)
    # The configured ports, so the local Prometheus (`make up`) scrapes this run; free ones if taken.
    ports = {name: config.get_int(name) if port_free(config.get_int(name)) else free_port() for name in METRICS_PORTS}
    env = service_env(prefix, SANDAN_MATCH_TIMEOUT=str(plan.match_timeout_s), SANDAN_LOCAL_DIR=str(run_dir),
                      SANDAN_GATEWAY_LISTEN=address, SANDAN_GATEWAY_CLIENTS=str(run_dir / "gateway-clients.json"),
                      **{setting: str(ports[setting]) for setting in METRICS_PORTS})
    # CEB_XSD_DIR checks the receipts the demo reads, not what the services take in: some of the
    # demo's broken documents (currency not 142) are for the match to reject (FIXED_VALUES),
    # where the gateway's XSD check would refuse them first and leave their declarations incomplete
    env.pop("CEB_XSD_DIR", None)
    env.update(paydata_checks.demo_settings())
    services = [ServiceProcess(name, args, env, run_dir).start() for name, args in SERVICES]
    desk, stop = parties_mod.CustomsDesk(customs), asyncio.Event()
    receipts_desk = ReceiptsDesk(parties, run_dir / "receipts", xsd.configured_dir())
    try:
        sets, docs, expected = build_documents(plan)
        files = write_inbox(docs, run_dir / "inbox", signers.sign)
        say(f"  generated {len(docs)} documents ({len(sets)} declarations, a share broken, missing or repeated)"
            f" in {len(files)} CEB XML files")
        amounts, short = parties_mod.guarantee_plan(sets)
        after_sales = returns_stage.AfterSales.choose(sets, short)
        desk.hold = after_sales.held()
        await wait_serving(address, services[-1])
        await asyncio.to_thread(parties_mod.register_guarantees, amounts, env)
        say(f"  registered {len(amounts)} tax guarantees; {short} is deliberately short")
        desk_task = asyncio.create_task(desk.run(stop))
        receipts_task = asyncio.create_task(receipts_desk.run(stop))
        submit_started = time.monotonic()
        async with GatewayClient(parties) as gw:
            answers = await gw.submit_files(files)
        accepted = sum(len(a.accepted) for _, a in answers)
        refused = sum(len(a.refused) for _, a in answers)
        say(f"  submitted through the gateway: {accepted} documents accepted, {refused} refused"
            f" ({time.monotonic() - submit_started:.1f}s); every message signed by its sender")
        signatures.refusals += signatures_stage.signature_refusals(answers)
        await signatures_stage.refuse_tampered(parties, signers, next(s.inventory for s in sets if s.expected_status
                                                                      == "verified"), signatures)
        say(f"  a CEB621 changed after signing: {signatures.tampered or 'NOT refused'}")
        flow = await asyncio.to_thread(wait_for_flow, set(expected), desk, services, plan.wait_s)
        before = {a["assureCode"]: a for a in await asyncio.to_thread(parties_mod.guarantee_balances, env)}
        returned = await returns_stage.run(after_sales, parties, env, say, flow.cleared, signers.sign)
        signed = await returns_stage.signed_for(sets, parties, flow.cleared, say, sign=signers.sign)
        settled = settle(short, flow, env)
        paydata = await paydata_checks.run_stage(sets, {d for d, v in flow.verdicts.items()
                                                        if v["status"] == "verified"}, env, run_dir / "platforms", say)
        # a tax bill per cleared declaration, a status change per settled bill and per bill voided in
        # full, a warehouse receipt per returned parcel, a sign-for receipt per CEB513
        await receipts_desk.settle({"CEB816": len(flow.cleared), "CEB818": len(settled) + returned["cancelled"]
                                    + returned["returns_completed"], "CEB712": len(after_sales.returns)
                                    + len(after_sales.unfit), "CEB514": signed})
        after = {a["assureCode"]: a for a in await asyncio.to_thread(parties_mod.guarantee_balances, env)}
        scraped = {setting: scrape.scrape(port) for setting, port in ports.items()}
        say(metrics_summary(scraped, ports, flow))
        say(await asyncio.to_thread(prometheus_view, len(flow.verdicts), ports))
        stop.set()
        await desk_task
        await receipts_task
        signatures.signed = signers.signed
        await asyncio.to_thread(signatures_stage.verify_receipts, receipts_desk, env, run_dir, signatures)
    finally:
        stop.set()
        for service in services:
            service.stop()
    return report(expected, flow, desk, returned, (before, after, short, settled), time.monotonic() - started, out,
                  receipts_desk, signatures, paydata)


METRICS_PORTS = ("SANDAN_ORDER_MATCH_METRICS_PORT", "SANDAN_TAX_GUARANTEE_METRICS_PORT",
                 "SANDAN_RETURNS_METRICS_PORT", "SANDAN_GATEWAY_METRICS_PORT")
SERVICES = [("order-match", ["worker", "order-match"]), ("tax-guarantee", ["worker", "tax-guarantee"]),
            ("returns", ["worker", "returns"]), ("paydata", ["paydata", "serve"]), ("gateway", ["gateway", "serve"])]


@dataclass
class Flow:
    verdicts: dict
    cleared: dict
    refused: dict


def wait_for_flow(expected: set[str], desk, services, wait_s: int) -> Flow:
    """Until every declaration has its verdict, every verified one is cleared or refused by the
    guarantee, and the customs desk has received every cleared one."""
    wire = codec()
    tails = {name: kafka_io.TopicTail(topics.name(name))
             for name in ("declarations.verdicts", "declarations.cleared", "declarations.refused")}
    flow = Flow({}, {}, {})
    seen = {"declarations.verdicts": flow.verdicts, "declarations.cleared": flow.cleared,
            "declarations.refused": flow.refused}
    bar = Progress("declarations", len(expected))
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            for name, tail in tails.items():
                for record in tail.poll(200):
                    verdict = wire.decode(record.value)[1]
                    seen[name][verdict["declarationId"]] = verdict
            verified = {d for d, v in flow.verdicts.items() if v["status"] == "verified"}
            guaranteed = verified <= (flow.cleared.keys() | flow.refused.keys())
            delivered = flow.cleared.keys() <= desk.delivered.keys()
            done = len(flow.verdicts.keys() & expected)
            if done == len(expected) and guaranteed and delivered:
                break
            dead = [s.name for s in services if not s.alive()]
            if dead:
                raise SystemExit(f"sandan demo: {', '.join(dead)} stopped; see {services[0].log.parent}")
            note = (f"cleared {len(flow.cleared)}, delivered {len(desk.delivered)}"
                    + (", waiting for incomplete ones to time out" if done >= len(expected) * 9 // 10 else ""))
            bar.update(done, note)
        bar.update(len(flow.verdicts.keys() & expected), f"cleared {len(flow.cleared)}, delivered {len(desk.delivered)}")
    finally:
        bar.finish()
        for tail in tails.values():
            tail.close()
    return flow


def settle(short: str, flow: Flow, env: dict) -> list[str]:
    """Customs' aggregated payment notice for the short account's cleared bills."""
    bills = sorted(d for d, v in flow.cleared.items() if v["assureCode"] == short)
    if bills:
        parties_mod.sandan("guarantee", "settle", "-a", short, "--ent-duty-no", "DEMO" + time.strftime("%Y%m%d%H%M"),
                           "--bills", ",".join(bills), "--actor", "demo", "--wait", "30", env=env)
    return bills


def metrics_summary(scraped: dict, ports: dict, flow: "Flow") -> str:
    """What the services' own /metrics endpoints say (the figures Prometheus scrapes)."""
    match, guarantee = scraped["SANDAN_ORDER_MATCH_METRICS_PORT"], scraped["SANDAN_TAX_GUARANTEE_METRICS_PORT"]
    returns, gateway = scraped["SANDAN_RETURNS_METRICS_PORT"], scraped["SANDAN_GATEWAY_METRICS_PORT"]
    complete = [v for v in flow.verdicts.values() if v["status"] != "incomplete"]
    decided = max((v["decidedAt"] for v in complete), default=0)
    first = min((v["lastDocumentAt"] for v in complete), default=decided)
    span_s = max(decided - first, 1) / 1000
    lines = ["", "from the services' /metrics (ports " + ", ".join(str(p) for p in ports.values()) + ")",
             f"  order_match   documents {scrape.total(match, 'sandan_documents_total')},"
             f" verdicts {scrape.total(match, 'sandan_verdicts_total')}"
             f" (verified {scrape.total(match, 'sandan_verdicts_total', status='verified')}),"
             f" dead letters {scrape.total(match, 'sandan_dead_letters_total')};"
             f" match latency p50 {scrape.histogram_quantile(match, 'sandan_match_latency_seconds', Decimal('0.5'))},"
             f" p99 {scrape.histogram_quantile(match, 'sandan_match_latency_seconds', Decimal('0.99'))}",
             f"  tax_guarantee deductions {scrape.total(guarantee, 'sandan_guarantee_deductions_total')},"
             f" refusals {scrape.total(guarantee, 'sandan_guarantee_refusals_total')},"
             f" voids {scrape.total(guarantee, 'sandan_guarantee_voids_total')},"
             f" settlements {scrape.total(guarantee, 'sandan_guarantee_settlements_total')}",
             f"  returns       decisions {scrape.total(returns, 'sandan_returns_decisions_total')},"
             f" void commands {scrape.total(returns, 'sandan_returns_void_commands_total')}",
             f"  gateway       calls {scrape.total(gateway, 'sandan_gateway_calls_total')}"
             f" (OK {scrape.total(gateway, 'sandan_gateway_calls_total', code='OK')}),"
             f" declarations streamed {scrape.total(gateway, 'sandan_gateway_streamed_total')}",
             f"  throughput    {len(complete) * 1000 // max(decided - first, 1)} complete declarations/s decided over"
             f" {span_s:.1f} s (workers start cold; `make bench` measures throughput properly)"]
    return "\n".join(lines)


def prometheus_view(verdicts: int, ports: dict, wait_s: float = 20) -> str:
    """The same figures as the local Prometheus server scraped them (it scrapes every 5 s)."""
    port = config.get_int("SANDAN_PROMETHEUS_PORT")
    if scrape.prometheus_total("vector(1)", port) is None:
        return f"(no Prometheus on 127.0.0.1:{port}; `make up` starts one)"
    if any(ports[name] != config.get_int(name) for name in METRICS_PORTS):
        return "(the configured metrics ports were taken, so Prometheus did not scrape this run)"
    query = 'sum(sandan_verdicts_total{job="order-match"})'
    deadline = time.monotonic() + wait_s
    seen = scrape.prometheus_total(query, port)
    while (seen is None or seen < verdicts) and time.monotonic() < deadline:
        time.sleep(1)
        seen = scrape.prometheus_total(query, port)
    cleared = scrape.prometheus_total('sum(sandan_guarantee_deductions_total{job="tax-guarantee"})', port)
    p99 = scrape.prometheus_total('histogram_quantile(0.99, sum by (le) (sandan_match_latency_seconds_bucket))', port)
    return (f"local Prometheus (127.0.0.1:{port}) scraped: verdicts {seen}, guarantee deductions {cleared},"
            f" match latency p99 {p99:.2f} s (interpolated)" if p99 is not None else
            f"local Prometheus (127.0.0.1:{port}) scraped: verdicts {seen}, guarantee deductions {cleared}")


def percentile(values: list[int], q: int) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, (len(ordered) * q) // 100)]


def report(expected: dict, flow: Flow, desk, returned: dict, guarantees, seconds: float, out,
           receipts: ReceiptsDesk, signatures: signatures_stage.SignatureReport,
           paydata: paydata_checks.PaydataReport) -> dict:
    before, after, short, settled = guarantees
    verdicts = flow.verdicts
    status = Counter(v["status"] for v in verdicts.values())
    rules = Counter(f["code"] for v in verdicts.values() if v["status"] == "rejected" for f in v["failures"])
    refusals = Counter(f["code"] for v in flow.refused.values() for f in v["failures"])
    mismatched = [d for d, want in expected.items() if verdicts.get(d, {}).get("status") != want]
    latency = [v["decidedAt"] - v["lastDocumentAt"] for v in verdicts.values() if v["status"] != "incomplete"]
    lines = ["", "verdicts (order_match)"]
    lines += [f"  {name:22} {status.get(name, 0):6}" for name in ("verified", "rejected", "incomplete")]
    if rules:
        lines.append("rejected by rule")
        lines += [f"  {code:22} {n:6}" for code, n in rules.most_common()]
    lines.append("tax guarantee")
    lines.append(f"  {'cleared':22} {len(flow.cleared):6}")
    lines += [f"  refused {code:14} {n:6}" for code, n in refusals.most_common()]
    lines.append("customs desk (gateway Subscribe)")
    lines.append(f"  {'delivered':22} {len(desk.delivered):6}   ({desk.deliveries} messages;"
                 f" released {len(desk.released - desk.hold)}, held for cancellation {len(desk.hold)})")
    lines.append("after-sales (returns service)")
    lines += [f"  {name:22} {returned[key]:6}" for name, key in (("cancelled", "cancelled"),
              ("returns completed", "returns_completed"), ("returns refused", "returns_refused"))]
    lines.append("guarantee balances (CNY: guaranteed / outstanding tax before -> after returns and settlement"
                 " / available)")
    for code in sorted(after):
        a, b = after[code], before.get(code, after[code])
        mark = "  <- short; settled %d bills" % len(settled) if code == short else ""
        lines.append(f"  {code} {a['guaranteed']:>12} / {b['outstanding']:>10} -> {a['outstanding']:>10}"
                     f" / {a['available']:>12}{mark}")
    delivered = receipts.delivered
    checked = receipts.xsd_dir is not None
    lines.append(f"receipts delivered as CEB XML (gateway Receipts, format CEB_XML; files in {receipts.folder})")
    lines += [f"  {code:22} {n:6}   ({receipts.messages[code]} messages"
              + (f"; {receipts.valid[code]} valid against the XSD)" if checked else ")")
              for code, n in sorted(delivered.items())]
    if not checked:
        lines.append("  (not checked against the XSD: set CEB_XSD_DIR to the folder of the official XSDs)")
    lines += [f"  XSD: {problem}" for problem in receipts.problems]
    lines += signatures.lines()
    lines += paydata.lines()
    lines.append(f"match latency (last document -> verdict): p50 {percentile(latency, 50)} ms,"
                 f" p95 {percentile(latency, 95)} ms, p99 {percentile(latency, 99)} ms")
    lines.append(f"every verdict as expected: {'yes' if not mismatched else f'NO, {len(mismatched)} differ'};"
                 f" delivered equals cleared: {'yes' if desk.delivered.keys() == flow.cleared.keys() else 'NO'}")
    print("\n".join(lines), file=out)
    result = {"declarations": len(expected), "verified": status.get("verified", 0),
              "rejected": status.get("rejected", 0), "incomplete": status.get("incomplete", 0),
              "cleared": len(flow.cleared), "guarantee_refused": len(flow.refused), "delivered": len(desk.delivered),
              "cancelled": returned["cancelled"], "returns_completed": returned["returns_completed"],
              "returns_refused": returned["returns_refused"],
              "receipts_xml": dict(sorted(delivered.items())),
              "receipts_xml_valid": dict(sorted(receipts.valid.items())) if checked else None,
              "signatures": signatures.to_json(),
              "paydata_checks": paydata.to_json(),
              "as_expected": not mismatched and desk.delivered.keys() == flow.cleared.keys()
              and (not checked or receipts.valid == delivered) and signatures.as_expected and paydata.as_expected,
              "seconds": round(seconds, 1)}
    print(json.dumps(result), file=out, flush=True)
    return result
