"""`make bench-gateway`: the gateway's Submit rate with signatures checked, and without.

A real gateway process (`sandan gateway serve`) on the local Kafka, under a topic prefix of its
own, takes signed one-inventory CEB621 messages from several concurrent Submit streams for
``--seconds``; then a second gateway, started with ``SANDAN_REQUIRE_SIGNATURE=none``, takes the
same messages without their ``ds:Signature`` for as long. Each stream sends one message, waits
for its answer, then sends the next, so a Submit's latency is the gateway's own (parse, field
rules, signature check, records acknowledged by Kafka) plus one loopback round trip.

- the messages are signed the way the demo's enterprises sign (``SigningParties``: a key and
  certificate per agent code, ``--algorithm`` SM2-SM3 or RSA-SHA256), the certificates
  registered for their codes as `sandan certs add` does, before the gateway starts;
- the client is this process (asyncio grpc, one channel per stream, as separate enterprises
  would connect); the gateway's CPU comes from /proc over the measured window only;
- every Submit must be accepted: a refusal, a gRPC error or a silent gateway ends the benchmark
  with exit status 1, since a figure made of refusals would measure the wrong thing. Before the
  checked run a tampered message must be refused ``DIGEST_MISMATCH`` (the check really runs).

Progress on stderr, one JSON object on stdout.

    python -m bench.gateway_submit [--seconds 20] [--concurrency 8] [--algorithm sm2|rsa] [--documents 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from lxml import etree

from bench import machine, procstats
from bench.pipeline import say
from services.common import config, kafka_io
from services.common.ceb.reader import DS_NAMESPACE
from services.common.ceb.writer import write_message
from services.demo.ports import free_port
from services.demo.processes import ServiceProcess, service_env
from services.demo.runner import percentile, wait_serving
from services.gateway.client import Credentials, GatewayClient, xml_item
from services.gateway.client_registry import add_client
from services.gateway.proto import gateway_pb2 as pb
from services.tools import runs
from services.tools.generator import generate
from services.tools.signing_parties import SigningParties

# name in the JSON, SANDAN_REQUIRE_SIGNATURE of its gateway, whether its messages are signed
VARIANTS = (("signatures_checked", "default", True), ("signatures_not_checked", "none", False))
ANSWER_TIMEOUT_S = 30.0  # a Submit unanswered this long means a stuck gateway, not a slow one
_SIGNATURE = f"{{{DS_NAMESPACE}}}Signature"
# grpc shares one connection between channels to the same address unless told not to
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


@dataclass
class Plan:
    seconds: float = 20.0
    warmup: float = 3.0
    concurrency: int = 8
    algorithm: str = "sm2"
    documents: int = 1  # inventories per CEB621 message
    # distinct messages, sent round and round: the gateway keeps no memory of the guids it took,
    # so a message sent again costs it what a new one would
    pool: int = 400
    seed: int = 7
    keep: bool = False


class BenchmarkWrong(Exception):
    """Something a correct benchmark never sees: a refusal, a gRPC error, no answer."""


def inventories_by_agent(plan: Plan) -> list[list[dict]]:
    """``plan.pool`` groups of ``plan.documents`` good inventories, each group of one agent (an
    agent sends and signs only its own declarations)."""
    sets = generate(plan.pool * plan.documents + 8 * plan.documents, fault_share=0, seed=plan.seed)
    by_agent: dict[str, list[dict]] = {}
    groups = []
    for found in sets:
        waiting = by_agent.setdefault(found.inventory["agentCode"], [])
        waiting.append(found.inventory)
        if len(waiting) == plan.documents:
            groups.append(list(waiting))
            waiting.clear()
            if len(groups) == plan.pool:
                return groups
    raise SystemExit(f"bench.gateway_submit: the generator gave {len(groups)} groups of {plan.documents}, "
                     f"not {plan.pool}")


def without_signature(xml: bytes) -> bytes:
    """The message as an enterprise sends it where no signature is asked for: no ds:Signature at
    all (the writer's placeholder would be verified, and refused, by any gateway)."""
    root = etree.fromstring(xml)
    for signature in root.findall(_SIGNATURE):
        root.remove(signature)
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def tampered(signed: bytes) -> bytes:
    """One quantity changed after signing, as a man in the middle would."""
    changed = signed.replace(b"<ceb:qty>", b"<ceb:qty>9", 1)
    if changed == signed:
        raise SystemExit("bench.gateway_submit: the signed CEB621 has no ceb:qty to tamper with")
    return changed


@dataclass
class Window:
    """The measured interval, and what the streams saw inside it (answers that arrived in it)."""
    start: float | None = None
    end: float | None = None
    stop: bool = False
    accepted: int = 0
    documents: int = 0
    refused: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def open(self, at: float) -> bool:
        return self.start is not None and at >= self.start and (self.end is None or at <= self.end)


async def _answer(call, label: str, end_expected: bool = False):
    """The stream's next answer (EOF only where ``end_expected``); BenchmarkWrong otherwise."""
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            answer = await call.read()
    except TimeoutError:
        raise BenchmarkWrong(f"{label}: no answer from the gateway in {ANSWER_TIMEOUT_S:.0f} s") from None
    if (answer is grpc.aio.EOF) != end_expected:
        raise BenchmarkWrong(f"{label}: the gateway ended the Submit stream (status {await call.code()}: "
                             f"{await call.details()})" if answer is grpc.aio.EOF else
                             f"{label}: an answer after the stream's end")
    return answer


async def submit_stream(credentials: Credentials, items: list[pb.SubmitItem], first: int, documents: int,
                        window: Window, label: str) -> None:
    """One Submit stream: an item, its answer, the next item, until the window has closed."""
    async with GatewayClient(credentials, channel_options=OWN_CONNECTION) as client:
        call = client.stub.Submit(metadata=client.metadata)
        try:
            await call.initial_metadata()
            n = first
            while not window.stop:
                sent = time.perf_counter()
                await call.write(items[n % len(items)])
                answer = await _answer(call, label)
                answered = time.perf_counter()
                n += 1
                ok = answer.outcome == pb.OUTCOME_ACCEPTED and len(answer.accepted) == documents
                if window.open(answered):
                    if ok:
                        window.accepted += 1
                        window.documents += len(answer.accepted)
                        window.latencies_ms.append((answered - sent) * 1000)
                    else:
                        window.refused += 1
                if not ok:
                    why = "; ".join(r.return_info for r in answer.refused) or pb.Outcome.Name(answer.outcome)
                    raise BenchmarkWrong(f"{label}: the gateway did not accept item {answer.item_id} "
                                         f"({len(answer.accepted)} of {documents} documents): {why}")
            await call.done_writing()
            await _answer(call, label, end_expected=True)
        except grpc.aio.AioRpcError as exc:
            raise BenchmarkWrong(f"{label}: Submit failed with {exc.code().name}: {exc.details()}") from None
        finally:
            if not call.done():
                call.cancel()


async def probe(credentials: Credentials, payload: bytes, expect: str, label: str) -> str:
    """Submits ``payload`` alone and returns its refusal, which must start with ``expect``."""
    async with GatewayClient(credentials) as client:
        answers = [a async for a in client.submit(iter([xml_item(payload, "probe")]), timeout=ANSWER_TIMEOUT_S)]
    refused = [r.return_info for a in answers for r in a.refused]
    if (len(answers) != 1 or answers[0].outcome != pb.OUTCOME_REFUSED or not refused
            or not refused[0].startswith(expect)):
        raise BenchmarkWrong(f"{label}: a tampered message must be refused {expect}, the gateway answered "
                             f"{[pb.Outcome.Name(a.outcome) for a in answers]} {refused}: is the signature checked?")
    return refused[0].split(" ", 1)[0]


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    used = {name: procstats.cpu_seconds(pid) for name, pid in pids.items()}
    used["client"] = time.process_time()  # this process: the streams and grpc's threads
    return used


async def drive(credentials: Credentials, items: list[pb.SubmitItem], plan: Plan, pids: dict[str, int],
                label: str) -> dict:
    """``plan.concurrency`` streams for the warm-up and the measured window; the window's figures."""
    window = Window()
    spread = max(1, len(items) // plan.concurrency)

    async def measure() -> tuple[dict, dict, tuple, tuple]:
        await asyncio.sleep(plan.warmup)
        before, busy_before = cpu_now(pids), procstats.machine_busy()
        window.start = time.perf_counter()
        await asyncio.sleep(plan.seconds)
        window.end = time.perf_counter()
        after, busy_after = cpu_now(pids), procstats.machine_busy()
        window.stop = True
        return before, after, busy_before, busy_after

    try:
        async with asyncio.TaskGroup() as group:
            for i in range(plan.concurrency):
                group.create_task(submit_stream(credentials, items, i * spread, plan.documents, window,
                                                f"{label} stream {i}"))
            measured = group.create_task(measure())
    except ExceptionGroup as failed:  # not except*: what that raises is wrapped in a group again
        wrong = [exc for exc in failed.exceptions if isinstance(exc, BenchmarkWrong)]
        if not wrong:
            raise
        raise wrong[0] from None
    before, after, busy_before, busy_after = measured.result()
    seconds = window.end - window.start
    if not window.accepted:
        raise BenchmarkWrong(f"{label}: no Submit answered within the {seconds:.1f} s window")
    per_submit = {name: round((after[name] - before[name]) / window.accepted * 1000, 3) for name in after}
    latencies = window.latencies_ms
    return {
        "submits": window.accepted + window.refused, "accepted": window.accepted, "refused": window.refused,
        "documents": window.documents, "seconds": round(seconds, 2),
        "submits_per_s": round(window.accepted / seconds, 1),
        "documents_per_s": round(window.documents / seconds, 1),
        "latency_ms": {"p50": round(percentile(latencies, 50), 2), "p99": round(percentile(latencies, 99), 2),
                       "max": round(max(latencies), 2)},
        "cpu_ms_per_submit": per_submit,
        "gateway_cores_busy": round((after["gateway"] - before["gateway"]) / seconds, 2),
        "machine_cpu_busy_pct": round(100 * (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]),
                                      1),
    }


def run_variant(name: str, require: str, payloads: list[bytes], probe_payload: bytes | None, plan: Plan,
                env: dict, run_dir: Path, token: str, stack_pids: dict[str, int]) -> dict:
    address = f"127.0.0.1:{free_port()}"
    gateway = ServiceProcess(f"gateway-{name}", ["gateway", "serve"],
                             dict(env, SANDAN_GATEWAY_LISTEN=address, SANDAN_REQUIRE_SIGNATURE=require), run_dir)
    gateway.start()
    say(f"  {name}: gateway pid {gateway.proc.pid} on {address} (SANDAN_REQUIRE_SIGNATURE={require}), "
        f"log {gateway.log}")
    credentials = Credentials(address, token)
    items = [xml_item(payload, str(n)) for n, payload in enumerate(payloads)]

    async def go() -> dict:
        await wait_serving(address, gateway)
        checked = None
        if probe_payload is not None:
            checked = await probe(credentials, probe_payload, "DIGEST_MISMATCH", name)
        say(f"  {name}: {plan.concurrency} streams, {plan.warmup:g} s warm-up, {plan.seconds:g} s measured")
        figures = await drive(credentials, items, plan, dict(stack_pids, gateway=gateway.proc.pid), name)
        if checked is not None:
            figures["tampered_message_refused"] = checked
        return figures

    try:
        figures = asyncio.run(go())
    finally:
        gateway.stop()
    if gateway.proc.returncode != 0:
        say(f"  {name}: the gateway exited {gateway.proc.returncode}; see {gateway.log}")
    say(f"  {name}: {figures['submits_per_s']} submits/s, p99 {figures['latency_ms']['p99']} ms, "
        f"gateway {figures['cpu_ms_per_submit']['gateway']} CPU-ms per submit")
    return dict({"require_signature": require, "messages": "signed" if require != "none" else "unsigned"}, **figures)


def run(plan: Plan) -> dict:
    prefix = f"benchgw{time.strftime('%Y%m%d%H%M%S')}-"
    os.environ["SANDAN_TOPIC_PREFIX"] = prefix
    local = Path(config.get("SANDAN_LOCAL_DIR"))
    run_dir = local / "bench" / prefix.rstrip("-")
    run_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    say(f"bench.gateway_submit: run {prefix.rstrip('-')}, logs in {run_dir}")
    groups = inventories_by_agent(plan)
    unsigned_with_placeholder = [write_message("CEB621", group) for group in groups]
    # kept between runs, as the demo keeps its parties': one key per agent code and algorithm
    signers = SigningParties(local / "bench" / "signing-parties" / plan.algorithm, plan.algorithm)
    signed = [signers.sign(xml) for xml in unsigned_with_placeholder]
    unsigned = [without_signature(xml) for xml in unsigned_with_placeholder]
    agents = sorted({group[0]["agentCode"] for group in groups})
    kafka_io.create_topics()
    signers.register(agents, by="bench")
    clients = run_dir / "gateway-clients.json"
    token = add_client(clients, "bench-enterprise", "enterprise", agents)
    say(f"  {len(signed)} CEB621 messages of {plan.documents} inventories signed ({plan.algorithm}) by "
        f"{len(agents)} agents, their certificates registered")
    # the rate limit is the gateway's defence, not its speed: lifted so it is not what is measured
    env = service_env(prefix, SANDAN_LOCAL_DIR=str(run_dir), SANDAN_GATEWAY_CLIENTS=str(clients),
                      SANDAN_GATEWAY_METRICS_PORT="0", SANDAN_GATEWAY_RATE="1000000", SANDAN_GATEWAY_BURST="1000000")
    stack_pids = {}
    pid = procstats.pid_from_file(local / "kafka" / "kafka.pid")
    if pid:
        stack_pids["kafka"] = pid  # shared with whatever else uses the broker
    result: dict = {
        "machine": machine.describe(), "load_average_at_start": round(load_before, 2),
        "algorithm": plan.algorithm, "message_type": "CEB621", "documents_per_message": plan.documents,
        "message_bytes": {"signed": round(sum(map(len, signed)) / len(signed)),
                          "unsigned": round(sum(map(len, unsigned)) / len(unsigned))},
        "concurrency": plan.concurrency, "warmup_seconds": plan.warmup,
    }
    try:
        for name, require, is_signed in VARIANTS:
            result[name] = run_variant(name, require, signed if is_signed else unsigned,
                                       tampered(signed[0]) if is_signed else None, plan, env, run_dir, token,
                                       stack_pids)
    except BenchmarkWrong as exc:
        raise SystemExit(f"bench.gateway_submit: {exc}") from None
    finally:
        if not plan.keep:
            runs.forget(prefix, run_dir)
    checked, plain = result["signatures_checked"], result["signatures_not_checked"]
    result["checked_over_not_checked"] = round(checked["submits_per_s"] / plain["submits_per_s"], 3)
    result["gateway_cpu_ms_added_per_signed_submit"] = round(checked["cpu_ms_per_submit"]["gateway"]
                                                             - plain["cpu_ms_per_submit"]["gateway"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_submit", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=Plan.seconds, help="measured seconds per variant")
    parser.add_argument("--warmup", type=float, default=Plan.warmup, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, default=Plan.concurrency, help="concurrent Submit streams")
    parser.add_argument("--algorithm", choices=("sm2", "rsa"), default=Plan.algorithm,
                        help="the enterprises' keys: SM2-SM3 or RSA-SHA256 (2048)")
    parser.add_argument("--documents", type=int, default=Plan.documents, help="inventories per CEB621 message")
    parser.add_argument("--pool", type=int, default=Plan.pool, help="distinct messages, sent round and round")
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--keep", action="store_true", help="keep the run's topics")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.documents < 1 or args.pool < 1 or args.seconds <= 0:
        parser.error("--concurrency, --documents, --pool and --seconds must be positive")
    plan = Plan(seconds=args.seconds, warmup=args.warmup, concurrency=args.concurrency, algorithm=args.algorithm,
                documents=args.documents, pool=args.pool, seed=args.seed, keep=args.keep)
    print(json.dumps(run(plan)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
