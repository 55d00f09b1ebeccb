"""`make bench`: the whole pipeline under load, on this machine, and raw Kafka next to it.

documents.* -> order_match (2 processes) -> declarations.matched -> tax_guarantee ->
declarations.cleared -> gateway Subscribe -> a customs-side subscriber (its own process).

Two modes:

* full speed (default): the declarations are produced as fast as Kafka takes them; the rate
  is declarations / (last declaration delivered - first document in). Latency here includes
  the backlog the burst builds up.
* ``--rate R``: documents are offered at R declarations/s for ``--duration`` seconds; the
  latency (a declaration's last document handed to the producer -> its delivery to the
  subscriber) is what a declaration sees at that load.

A warm-up of ``--warmup`` declarations goes through first (workers joined, subscriber
streaming), and is not counted. CPU seconds per 1,000 declarations are taken from /proc for
each process over the measured window (Kafka and Redis are shared with whatever else runs on
the machine). Progress goes to stderr; the result is one JSON object on stdout.

    python -m bench.pipeline [--declarations N] [--rate R --duration S] [--no-raw-kafka]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import machine
from services.common import config, kafka_io
from services.tools import runs
from services.common.worker_exit import CRASHED
from services.demo import parties as parties_mod
from services.demo.processes import ServiceProcess, service_env
from services.demo.runner import free_port, percentile, wait_serving

from bench import kafka_perf, load as load_mod, procstats
from bench.stages import StageSampler


@dataclass
class Plan:
    declarations: int = 60_000  # about a minute at the rate this machine reaches
    warmup: int = 1_000
    rate: float | None = None
    duration: float = 60.0
    order_match_workers: int = 2
    guarantee_workers: int = 1
    seed: int = 8
    raw_kafka: bool = True
    keep: bool = False
    stall_s: float = 90.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def services_of(plan: Plan, env: dict) -> list[ServiceProcess]:
    log_dir = Path(env["SANDAN_LOCAL_DIR"])
    found = [ServiceProcess(f"order-match-{i}", ["worker", "order-match"], dict(env, SANDAN_WORKER_INDEX=str(i)),
                            log_dir) for i in range(plan.order_match_workers)]
    found += [ServiceProcess(f"tax-guarantee-{i}", ["worker", "tax-guarantee"],
                             dict(env, SANDAN_WORKER_INDEX=str(i)), log_dir) for i in range(plan.guarantee_workers)]
    found.append(ServiceProcess("gateway", ["gateway", "serve"], env, log_dir))
    return found


class Supervisor:
    """Starts a worker again when it exits asking for it (70: a handler failed or an output was lost), as
    docker compose or systemd do in production; any other exit ends the benchmark. Counts the
    CPU time of every process a service had while measuring, restarted ones included."""

    def __init__(self, services: list[ServiceProcess]) -> None:
        self.services, self.restarts, self.last_restart = services, 0, time.monotonic()
        self._cpu: dict[int, list] = {}  # pid -> [service name, CPU s when measuring began, latest]
        self._measuring = False

    def check(self) -> None:
        for service in self.services:
            if not service.alive():
                if service.proc.returncode != CRASHED:
                    raise SystemExit(f"bench: {service.name} stopped (exit {service.proc.returncode});"
                                     f" see {service.log}")
                say(f"  {service.name} exited 70; starting it again")
                service.start()
                self.restarts += 1
                self.last_restart = time.monotonic()
            self._sample(service)

    def _sample(self, service: ServiceProcess) -> None:
        pid = service.proc.pid
        used = procstats.cpu_seconds(pid)
        entry = self._cpu.setdefault(pid, [service.name, used if not self._measuring else 0.0, used])
        entry[2] = max(entry[2], used)  # a process that is gone reads 0: keep its last figure

    def settle(self, quiet_s: float) -> None:
        """Until no worker has had to start again for ``quiet_s`` (the group is stable)."""
        while time.monotonic() - self.last_restart < quiet_s:
            self.check()
            time.sleep(0.5)

    def start_measuring(self) -> None:
        self._cpu.clear()
        self.check()
        self._measuring = True

    def cpu_seconds(self) -> dict[str, float]:
        self.check()
        used: dict[str, float] = {}
        for name, first, latest in self._cpu.values():
            used[name] = used.get(name, 0.0) + latest - first
        return used


class Deliveries:
    """Follows the subscriber's output file: declaration id -> wall-clock ms of delivery, and of
    its verdict (order_match's decidedAt)."""

    def __init__(self, path: Path) -> None:
        self.path, self.at, self.decided, self._offset, self._rest = path, {}, {}, 0, b""

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            decl, ms, decided = line.decode().split()
            self.at.setdefault(decl, float(ms))
            self.decided.setdefault(decl, float(decided))

    def wait_for(self, wanted: set[str], supervisor: Supervisor, stall_s: float, label: str) -> None:
        last_count, last_progress = -1, time.monotonic()
        while True:
            self.poll()
            done = len(wanted & self.at.keys())
            if done == len(wanted):
                return
            if done != last_count:
                last_count, last_progress = done, time.monotonic()
                say(f"  {label}: {done}/{len(wanted)} delivered")
            elif time.monotonic() - last_progress > stall_s:
                say(f"  {label}: no delivery for {stall_s:.0f}s, giving up at {done}/{len(wanted)}")
                return
            supervisor.check()
            time.sleep(0.5 if done else 1.0)


def partitions_per_member(group: str) -> dict[str, int]:
    """How many document-topic partitions each member of a consumer group holds."""
    client = kafka_io.admin()
    try:
        described = client.describe_groups([group])[group]
    finally:
        client.close()
    counts = {}
    for member in described.get("members", []):
        owned = (member.get("member_assignment") or {}).get("assigned_partitions") or []
        name = member.get("group_instance_id") or member.get("member_id")
        counts[name] = sum(len(t["partitions"]) for t in owned if t["topic"].endswith("documents.order"))
    return counts


def summary(values: list[float]) -> dict:
    ints = [int(v) for v in values]
    return {"p50": percentile(ints, 50), "p95": percentile(ints, 95), "p99": percentile(ints, 99),
            "max": max(ints) if ints else 0}


def run(plan: Plan) -> dict:
    prefix = f"bench{time.strftime('%Y%m%d%H%M%S')}-"
    os.environ["SANDAN_TOPIC_PREFIX"] = prefix
    run_dir = Path(config.get("SANDAN_LOCAL_DIR")) / "bench" / prefix.rstrip("-")
    run_dir.mkdir(parents=True, exist_ok=True)
    measured_count = int(plan.rate * plan.duration) if plan.rate else plan.declarations
    say(f"bench: run {prefix.rstrip('-')}, {measured_count} declarations"
        f" ({'%.0f/s offered' % plan.rate if plan.rate else 'full speed'}); logs in {run_dir}")
    started = time.monotonic()
    full = load_mod.build(plan.warmup + measured_count, plan.seed)
    split = full.cut(plan.warmup)
    warm, measured = full.part(0, split), full.part(split, len(full.records))
    say(f"  load ready: {len(full.records)} records ({time.monotonic() - started:.1f}s)")
    kafka_io.create_topics()
    address = f"127.0.0.1:{free_port()}"
    clients = run_dir / "gateway-clients.json"
    _, customs = parties_mod.gateway_clients(clients, address)
    customs.save(run_dir / "customs.json")
    env = service_env(prefix, SANDAN_LOCAL_DIR=str(run_dir), SANDAN_GATEWAY_LISTEN=address,
                      SANDAN_GATEWAY_CLIENTS=str(clients), SANDAN_MATCH_TIMEOUT="3600",
                      SANDAN_ORDER_MATCH_METRICS_PORT="0", SANDAN_TAX_GUARANTEE_METRICS_PORT="0",
                      SANDAN_GATEWAY_METRICS_PORT="0", SANDAN_TOPIC_PARTITIONS=config.get("SANDAN_TOPIC_PARTITIONS"))
    services = [s.start() for s in services_of(plan, env)]
    supervisor = Supervisor(services)
    subscriber = None
    result: dict = {}
    try:
        asyncio.run(wait_serving(address, services[-1]))
        parties_mod.register_guarantees(full.guarantees, env)
        say(f"  {len(services)} services up, {len(full.guarantees)} guarantees registered")
        out = run_dir / "deliveries.txt"
        subscriber = subprocess.Popen([sys.executable, "-m", "bench.subscriber", "--credentials",
                                       str(run_dir / "customs.json"), "--out", str(out)], env=env,
                                      cwd=config.PROJECT_ROOT, stdout=open(run_dir / "subscriber.log", "ab"),
                                      stderr=subprocess.STDOUT)
        deliveries = Deliveries(out)
        asyncio.run(load_mod.send(warm))
        deliveries.wait_for(warm.cleared, supervisor, plan.stall_s, "warm-up")
        supervisor.settle(quiet_s=20)  # a worker started again rejoins; let the group settle first
        restarts_before = supervisor.restarts
        pids = {"subscriber": subscriber.pid, "producer": os.getpid()}
        stack = Path(config.get("SANDAN_LOCAL_DIR"))
        for name, pid_file in (("kafka", stack / "kafka" / "kafka.pid"), ("redis", stack / "redis" / "redis.pid")):
            pid = procstats.pid_from_file(pid_file)
            if pid:
                pids[name] = pid
        (run_dir / "pids.json").write_text(json.dumps(dict(pids, **{s.name: s.proc.pid for s in services})))
        cpu_before = {name: procstats.cpu_seconds(pid) for name, pid in pids.items()}
        supervisor.start_measuring()
        load_before = os.getloadavg()[0]
        busy_before = procstats.machine_busy()
        sampler = StageSampler().start()
        first_in = time.time() * 1000
        sent = asyncio.run(load_mod.send(measured, rate=plan.rate))
        produced_s = time.time() - first_in / 1000
        say(f"  measured load sent in {produced_s:.1f}s")
        deliveries.wait_for(measured.cleared, supervisor, plan.stall_s, "measured")
        cpu_after = {name: procstats.cpu_seconds(pid) for name, pid in pids.items()}
        busy_after = procstats.machine_busy()
        sampler.stop()
        used = dict({name: cpu_after[name] - cpu_before[name] for name in pids}, **supervisor.cpu_seconds())
        peaks = {name: procstats.peak_rss_mb(pid) for name, pid in pids.items()}  # kafka, redis: over their life
        peaks.update({s.name: procstats.peak_rss_mb(s.proc.pid) for s in services})
        assignment = partitions_per_member(f"{prefix}sandan-order-match")
        got = {d: deliveries.at[d] for d in measured.cleared if d in deliveries.at}
        last_out = max(got.values()) if got else first_in
        seconds = (last_out - first_in) / 1000
        latencies = [got[d] - sent[d] for d in got]
        with open(run_dir / "latencies.csv", "w", encoding="ascii") as handle:  # for a closer look
            handle.write("declaration,last_document_in_ms,verdict_ms,delivered_ms\n")
            handle.writelines(f"{d},{sent[d]:.0f},{deliveries.decided[d]:.0f},{got[d]:.0f}\n" for d in sorted(got, key=sent.get))
        to_verdict = [deliveries.decided[d] - sent[d] for d in got]
        verdict_to_delivery = [got[d] - deliveries.decided[d] for d in got]
        n = len(measured.declarations)
        cpu = {name: round(seconds_used / n * 1000, 3) for name, seconds_used in used.items()}
        for group in ("order-match", "tax-guarantee"):
            cpu[group.replace("-", "_")] = round(sum(v for k, v in cpu.items() if k.startswith(group + "-")), 3)
        result = {
            "mode": "rate" if plan.rate else "full-speed",
            "offered_declarations_per_s": plan.rate,
            "declarations": n, "documents": len(measured.records),
            "expected_delivered": len(measured.cleared), "delivered": len(got),
            "seconds": round(seconds, 2),
            "declarations_per_s": round(n / seconds, 1) if seconds > 0 else None,
            "documents_per_s": round(len(measured.records) / seconds, 1) if seconds > 0 else None,
            "producer_seconds": round(produced_s, 2),
            "latency_ms": summary(latencies),
            # the same split at order_match's verdict: documents in -> verdict, verdict -> customs
            "latency_to_verdict_ms": summary(to_verdict),
            "latency_verdict_to_delivery_ms": summary(verdict_to_delivery),
            "cpu_s_per_1000_declarations": cpu,
            "peak_rss_mb": peaks,
            "order_match_partitions": assignment,
            "worker_restarts": {"warm_up": restarts_before, "measured": supervisor.restarts - restarts_before},
            # when each stage's output was complete, seconds after the first document went in
            "stages_done_s": dict(sampler.finished(first_in), **{"gateway: delivered": round(seconds, 1)}),
            "machine_cpu_busy_pct": round(100 * (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]),
                                          1),
            "load_average_at_start": round(load_before, 2),
            "machine": machine.describe(),
        }
    finally:
        if subscriber is not None:
            subscriber.terminate()
            subscriber.wait(10)
        for service in services:
            service.stop()
    if plan.raw_kafka and result:
        say("  raw Kafka: ProducerPerformance + ConsumerPerformance on the same records")
        values = [value for _, _, value in measured.records[:20000]]
        raw = kafka_perf.run(values, len(measured.records), run_dir)
        result["raw_kafka"] = raw
        if result["documents_per_s"]:
            result["sandan_over_raw_kafka"] = round(result["documents_per_s"] / raw["produce_consume_records_per_s"], 4)
    if not plan.keep:
        runs.forget(prefix, run_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="sandan end-to-end benchmark (one JSON line on stdout)")
    parser.add_argument("--declarations", type=int, default=Plan.declarations, help="full speed: how many")
    parser.add_argument("--rate", type=float, default=None, help="offer this many declarations/s (latency mode)")
    parser.add_argument("--duration", type=float, default=Plan.duration, help="with --rate: seconds of load")
    parser.add_argument("--warmup", type=int, default=Plan.warmup, help="declarations sent first, not counted")
    parser.add_argument("--order-match-workers", type=int, default=Plan.order_match_workers)
    parser.add_argument("--guarantee-workers", type=int, default=Plan.guarantee_workers)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--no-raw-kafka", dest="raw_kafka", action="store_false",
                        help="skip Kafka's own producer/consumer perf tools")
    parser.add_argument("--keep", action="store_true", help="keep the run's topics, Redis keys and tables")
    args = parser.parse_args()
    plan = Plan(declarations=args.declarations, warmup=args.warmup, rate=args.rate, duration=args.duration,
                order_match_workers=args.order_match_workers, guarantee_workers=args.guarantee_workers,
                seed=args.seed, raw_kafka=args.raw_kafka, keep=args.keep)
    print(json.dumps(run(plan)), flush=True)


if __name__ == "__main__":
    main()
