"""The whole clearance pipeline on the private stack, under a generated load, for crash tests.

Built from the demo (services/demo): the same generated declarations written as CEB XML
messages, each signed by its sender with a test identity registered for it (the gateway keeps
its default SANDAN_REQUIRE_SIGNATURE), the same gateway clients, guarantee accounts, customs
desk and after-sales documents. Added here is what crashes need:

- services that a test kills (SIGKILL), stops and restarts while the load runs;
- a submitter and a customs desk that reconnect after a gateway crash: the submitter sends
  again every item the gateway has not answered (an answer comes only once the documents
  are on Kafka, so what was answered is never sent twice, and what was not may be);
- a tracker that stamps when each declaration entered the pipeline (its first document
  acknowledged) and when it left it (refused, rejected, or delivered to customs), so the
  report can count the declarations in flight at each fault and their latency;
- a load at a fixed offered rate (``Plan.rate``, declarations/s): the messages go out on a
  schedule fixed at the start, so a stall (a gateway restarting) is caught up afterwards, as
  a client's queue would; or a burst at full speed (``Plan.burst_s``) to measure what the
  machine sustains;
- after-sales during the load: cancellations of declarations customs holds back, full
  returns (fit and unfit parcels) of released ones.

``run`` returns the ``Evidence`` (``audit.py``) once everything has settled or time is up,
with every record on the services' input partitions and what answers them (``accounting.py``).
"""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import grpc

from services.common import config, kafka_io, redis_client, topics
from services.common.avro import codec
from services.common.ceb.writer import write_message
from services.common.clock import now_ms
from services.tools.generator import WAREHOUSES
from services.tools.signing_parties import SigningParties
from services.common.worker_exit import CRASHED
from services.demo import parties, returns_stage, runner
from services.demo.processes import ServiceProcess, service_env
from services.gateway.client import Credentials, GatewayClient, xml_item
from services.order_match.decide import declaration_id
from services.common.quota.sources import RedisQuotaHashes
from services.returns.arrivals import arrival_record
from services.tax_guarantee.redis_store import RedisAccountStore
from services.returns import app as returns_app
from tests.faults import accounting
from tests.faults.audit import Evidence
from tests.integration.workers import with_prefix

WORKERS = ("order-match", "tax-guarantee", "returns")
COMMANDS = dict(runner.SERVICES)
# Metrics are off (port 0): scenarios run one after another and must not fight over ports.
METRICS_OFF = {f"SANDAN_{name}_METRICS_PORT": "0" for name in ("ORDER_MATCH", "TAX_GUARANTEE", "RETURNS", "GATEWAY")}
REDIS_SETTINGS = ("SANDAN_REDIS_URL", "SANDAN_REDIS_SENTINELS", "SANDAN_REDIS_MASTER")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN}


@dataclass
class Plan:
    count: int = 120           # declarations
    seed: int = 1
    load_s: float = 12.0       # the submissions are spread over this long
    after_sales: int = 4       # cancellations and returns (each), plus one unfit return
    # Incomplete declarations get their verdict this long after their first document *arrived*.
    # It must outlast what a fault delays a declaration's last document by (a gateway killed
    # and restarted, the submitter reconnecting and sending again): the audit expects every
    # other declaration verified, and a document arriving after the timeout makes it INCOMPLETE.
    match_timeout_s: int = 20
    incomplete: bool = True    # hold back a document of 3 % of the declarations (they end incomplete)
    spread: int = 20           # a declaration's documents arrive among those of this many declarations
    settle_s: float = 150.0    # longest wait, after the load, for everything to come out
    workers: dict[str, int] = field(default_factory=lambda: {name: 1 for name in WORKERS})
    rate: float = 0.0          # declarations/s offered (then over count / rate seconds, not load_s)
    burst_s: float = 0.0       # send at full speed for this long, then stop (measures the capacity)

    @property
    def duration_s(self) -> float:
        """How long the submissions are spread over."""
        return self.count / self.rate if self.rate else self.load_s


def load_bound_s(plan: Plan) -> float:
    """How long a load may take to be acknowledged whole: its own length, the settling time, and
    ten minutes for faults to delay it (the slowest scenarios catch up in a few)."""
    return plan.duration_s + max(plan.settle_s, plan.duration_s) + 600


def environment(prefix: str, run_dir: Path, **extra: str) -> dict:
    """The environment of a scenario's services: its topics and keys, its folder, no metrics ports."""
    return service_env(prefix, **{"SANDAN_LOCAL_DIR": str(run_dir), "SANDAN_RETURNS_TICK_SECONDS": "1",
                                  "SANDAN_LOG_LEVEL": "INFO", **METRICS_OFF, **extra})


class Services:
    """The sandan processes of one scenario, by name (``order-match``, ``order-match-2``, ``gateway``)."""

    def __init__(self, env: dict, run_dir: Path, workers: dict[str, int], gateway: bool = True) -> None:
        self.procs: dict[str, ServiceProcess] = {}
        for kind, copies in workers.items():
            for index in range(copies):
                name = kind if index == 0 else f"{kind}-{index + 1}"
                self.procs[name] = ServiceProcess(name, COMMANDS[kind], dict(env, SANDAN_WORKER_INDEX=str(index)),
                                                  run_dir)
        if gateway:
            self.procs["gateway"] = ServiceProcess("gateway", COMMANDS["gateway"], env, run_dir)
        self.down: set[str] = set()     # stopped or killed by the test, on purpose
        self.crashes: list[str] = []    # every exit that was neither asked for nor a rebalance restart
        self.dead: set[str] = set()      # exited for good
        self.restarts: dict[str, int] = {}  # exits asking for a restart (worker_exit's 70), as a supervisor sees them

    def start_all(self) -> None:
        for proc in self.procs.values():
            proc.start()

    def kill(self, name: str) -> None:
        self.down.add(name)
        self.procs[name].kill()

    def stop(self, name: str) -> None:
        self.down.add(name)
        self.procs[name].stop()

    def start(self, name: str) -> None:
        self.procs[name].start()
        self.down.discard(name)

    def check(self) -> None:
        """Play the supervisor: start again a worker that exited with 70 (a handler failed, or Kafka
        refused an output), which is also a crash; any other death is a crash and stays dead."""
        for name, proc in self.procs.items():
            if name in self.down or name in self.dead or proc.alive():
                continue
            code = proc.proc.returncode
            self.crashes.append(f"{name} exited with {code} without being stopped")
            if code == CRASHED:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                proc.start()
            else:
                self.dead.add(name)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def logs(self) -> list[Path]:
        return sorted({proc.log for proc in self.procs.values()})


class Submitter:
    """Sends CEB XML items over gateway Submit streams and reconnects when a stream breaks."""

    def __init__(self, credentials: Credentials, pace_s: float = 0.0, stop_after_s: float = 0.0) -> None:
        self.credentials, self.pace_s, self.stop_after_s = credentials, pace_s, stop_after_s
        self.pending: dict[str, bytes] = {}
        self.acked_at: dict[str, int] = {}  # document guid -> when the gateway said it is on Kafka
        self.acked: list[str] = []          # the same guids in the order of their answers (read incrementally)
        self.sent_once: set[str] = set()    # items sent at least once: sent again at once, off the schedule
        self._next_at = 0.0                 # when the next new item is due (event loop time)
        self._stop_at: float | None = None  # a burst's end: items not sent by then never are
        self.refused: list[str] = []
        self.reconnects = 0
        self.last_error = ""                # the last refusal of a whole stream, for a load that never ends
        self._more = asyncio.Event()
        self._closed = False

    def add(self, item_id: str, payload: bytes) -> None:
        self.pending[item_id] = payload
        self._more.set()

    def close(self) -> None:
        self._closed = True
        self._more.set()

    async def run(self) -> None:
        while self.pending or not self._closed:
            if not self.pending:
                self._more.clear()
                await self._more.wait()
                continue
            try:
                async with GatewayClient(self.credentials) as gw:
                    async for answer in gw.submit(self._items()):
                        stamp = now_ms()
                        self.pending.pop(answer.item_id, None)
                        for guid in answer.accepted:
                            if guid not in self.acked_at:
                                self.acked_at[guid] = stamp
                                self.acked.append(guid)
                        self.refused += [f"{answer.item_id}: {r.return_info}" for r in answer.refused]
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                self.reconnects += 1
                self.last_error = f"{exc.code().name}: {exc.details()}"
                await asyncio.sleep(0.5)

    async def _items(self):
        sent: set[str] = set()
        loop = asyncio.get_running_loop()
        if not self._next_at:
            self._next_at = loop.time()
            self._stop_at = loop.time() + self.stop_after_s if self.stop_after_s else None
        while True:
            fresh = [item_id for item_id in self.pending if item_id not in sent]
            if not fresh:
                if self._closed:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            for item_id in fresh:
                sent.add(item_id)
                if item_id not in self.pending:
                    continue
                if item_id not in self.sent_once:
                    if self._stop_at is not None and loop.time() > self._stop_at:
                        self._drop_unsent()
                        break
                    # on a schedule fixed at the start: a stall is caught up, the rate stays the offered one
                    await asyncio.sleep(max(self._next_at - loop.time(), 0))
                    self._next_at += self.pace_s
                    self.sent_once.add(item_id)
                yield xml_item(self.pending[item_id], item_id)

    def _drop_unsent(self) -> None:
        """The burst is over: what was never sent is not sent at all."""
        for item_id in [i for i in self.pending if i not in self.sent_once]:
            del self.pending[item_id]


class Desk(parties.CustomsDesk):
    """The demo's customs desk with its reports on several calls at once: one report at a time,
    each a round trip to Kafka, held the whole pipeline near 40 declarations/s."""

    REPORTERS = 16

    async def run(self, stop: asyncio.Event) -> None:
        cursor = ""
        reporting: set[str] = set()  # queued or being reported (reported again after a reconnect)
        queue: asyncio.Queue = asyncio.Queue(maxsize=2000)
        async with GatewayClient(self.credentials) as gw:
            reporters = [asyncio.create_task(self._reporter(gw, queue)) for _ in range(self.REPORTERS)]
            try:
                while not stop.is_set():
                    streamed = 0
                    async for item in gw.subscribe(cursor, idle_timeout=1.0):
                        cursor = item.cursor
                        streamed += 1
                        self.deliveries += 1
                        self.delivered[item.declaration_id] = item
                        if item.declaration_id not in self.released and item.declaration_id not in reporting:
                            reporting.add(item.declaration_id)
                            await _put(queue, item, reporters)
                        _raise_failed(reporters)
                    self.note(f"stream ended after {streamed} items (idle 1 s or end); queue {queue.qsize()},"
                              f" reporters alive {sum(not t.done() for t in reporters)}")
                    _raise_failed(reporters)
            finally:
                for task in reporters:
                    task.cancel()
                await asyncio.gather(*reporters, return_exceptions=True)

    def note(self, line: str) -> None:
        """The desk's journal (``desk.log`` in the run folder): how its streams ended, for a look
        after a run where customs did not get everything. Repeats of a line are counted, not written."""
        journal = getattr(self, "journal", None)
        if journal is None:
            return
        if line == getattr(self, "_last_note", None):
            self._repeats = getattr(self, "_repeats", 0) + 1
            return
        if getattr(self, "_repeats", 0):
            journal.write(f"{time.strftime('%H:%M:%S')} (the line before, {self._repeats} times more)\n")
        self._last_note, self._repeats = line, 0
        journal.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        journal.flush()

    async def _reporter(self, gw: GatewayClient, queue: asyncio.Queue) -> None:
        while True:
            item = await queue.get()
            # accepted and numbered (120); released (800) unless held back for a cancellation
            held = item.declaration_id in self.hold
            while True:
                try:
                    await gw.report(ebp_code=item.ebp_code, order_no=item.order_no, status="120" if held else "800",
                                    decided_at=parties._china_now(), invt_no=parties.invt_no(item),
                                    report_id=f"{'accept' if held else 'release'}:{item.declaration_id}")
                    break
                except grpc.aio.AioRpcError as exc:
                    # "send the report again", as the gateway says (Redis or Kafka away, the rate
                    # limit); anything else ends the desk's run, which reconnects
                    if exc.code() not in RETRY_REPORT:
                        raise
                    await asyncio.sleep(0.2)
            self.released.add(item.declaration_id)


RETRY_REPORT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)


async def _put(queue: asyncio.Queue, item, reporters: list[asyncio.Task]) -> None:
    """Onto the reporters' queue; a full queue whose reporters have failed raises their error
    (waiting on it would hold the desk's stream for ever: soak SOAK_SEED=20261205, chunk 36)."""
    while True:
        try:
            async with asyncio.timeout(1.0):
                await queue.put(item)
            return
        except TimeoutError:
            _raise_failed(reporters)


def _raise_failed(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()


async def keep_desk(desk: parties.CustomsDesk, stop: asyncio.Event) -> int:
    """The demo's customs desk, started again whenever its gateway stream breaks; returns the reconnects.
    It resumes from the beginning of the topic: a desk de-duplicates by declaration id."""
    reconnects = 0
    note = getattr(desk, "note", lambda line: None)
    while not stop.is_set():
        try:
            await desk.run(stop)
        except grpc.aio.AioRpcError as exc:
            note(f"reconnecting after {exc.code().name}: {(exc.details() or '')[:160]}")
            reconnects += 1
            await asyncio.sleep(0.5)
        except BaseException as exc:
            note(f"the desk stopped: {exc!r}"[:300])
            raise
    return reconnects


class Tracker:
    """Follows the output topics: when each declaration left the pipeline, what after-sales stand at."""

    SHORT = ("declarations.verdicts", "declarations.cleared", "declarations.refused", "receipts", "returns.waybills")

    def __init__(self, desk: parties.CustomsDesk) -> None:
        self.desk = desk
        self.wire = codec()
        self.tails = {short: kafka_io.TopicTail(topics.name(short)) for short in self.SHORT}
        self.status: dict[str, str] = {}     # declaration -> order_match status
        self.guaranteed: set[str] = set()    # verified declarations the guarantee cleared or refused
        self.cleared: set[str] = set()
        self.refused: set[str] = set()
        self.left_at: dict[str, int] = {}    # declaration -> when it left the pipeline
        self.known_to_returns: set[str] = set()
        self.released: set[str] = set()      # known to the returns service as released
        self.receipts: dict[str, set[str]] = {}  # document guid -> receipt statuses

    async def poll(self) -> None:
        """New output records; a cleared declaration leaves when the desk gets it (``Deliveries``)."""
        for short, tail in self.tails.items():
            for record in await asyncio.to_thread(tail.poll, 50):
                self._take(short, self.wire.decode(record.value)[1], record.timestamp)

    def _take(self, short: str, record: dict, at: int) -> None:
        if short == "declarations.verdicts":
            decl = record["declarationId"]
            self.status[decl] = record["status"]
            if record["status"] != "verified":
                self.left_at.setdefault(decl, at)
        elif short == "declarations.cleared":
            self.guaranteed.add(record["declarationId"])
            self.cleared.add(record["declarationId"])
        elif short == "declarations.refused":
            self.guaranteed.add(record["declarationId"])
            self.refused.add(record["declarationId"])
            self.left_at.setdefault(record["declarationId"], at)
        elif short == "receipts":
            self.receipts.setdefault(record["documentGuid"] or "", set()).add(record["returnStatus"])
        else:
            decl = declaration_id(record["ebpCode"], record["orderNo"])
            self.known_to_returns.add(decl)
            if record["releasedAt"] is not None:
                self.released.add(decl)

    def settled(self, submitted: set[str]) -> bool:
        verified = {d for d, s in self.status.items() if s == "verified"}
        return (submitted <= self.status.keys() and verified <= self.guaranteed
                and self.cleared <= self.desk.delivered.keys())

    def waiting_for(self, submitted: set[str], after: "AfterSales") -> str:
        verified = {d for d, s in self.status.items() if s == "verified"}
        open_after = [f"{kind} {decl}: receipts {sorted(self.receipts.get(guid, ()))}"
                      for guid, (kind, decl) in after.sent().items() if not self.receipts.get(guid, set()) & FINAL]
        unsent = [_set_decl(s) for s in after.plan.cancel + after.plan.returns + after.plan.unfit
                  if _set_decl(s) not in {d for _, d in after.sent().values()} and not after.out_of_play(s)]
        return "\n".join([
            f"without a verdict: {sorted(submitted - self.status.keys())}",
            f"verified, no guarantee outcome: {sorted(verified - self.guaranteed)}",
            f"cleared, not delivered: {sorted(self.cleared - self.desk.delivered.keys())}",
            f"after-sales sent, no final answer: {open_after}",
            f"after-sales planned, never sent (not released?): {unsent}",
        ]) + "\n"

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


FINAL = {"399", "100"}


class Deliveries(dict):
    """The customs desk's deliveries (declaration -> item), stamped when each first arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.first_at: dict[str, int] = {}

    def __setitem__(self, decl, item) -> None:
        self.first_at.setdefault(decl, now_ms())
        super().__setitem__(decl, item)


def prepared_load(count: int, seed: int, incomplete: bool, spread: int, folder: Path, sign) -> tuple:
    """The load of a plan, generated, written and signed once per session and shared by its scenarios
    (20,000 declarations take half a minute): (sets, expected, message files, document guid -> declaration).
    Each scenario has its own topics and keys, so the same documents can go through each; the
    signing identities are the suite's own (``SigningParties``), the same in every scenario."""
    key = (count, seed, incomplete, spread, folder)
    if key not in _LOADS:
        _LOADS[key] = _prepare(count, seed, incomplete, spread, folder, sign)
    return _LOADS[key]


def _prepare(count: int, seed: int, incomplete: bool, spread: int, folder: Path, sign) -> tuple:
    plan = Plan(count=count, seed=seed, incomplete=incomplete, spread=spread)
    sets, docs, expected = runner.build_documents(runner.DemoPlan(
        count=count, seed=seed, incomplete_share=Decimal("0.03") if incomplete else Decimal(0)))
    inbox = folder / f"load-{count}-{seed}-{int(incomplete)}-{spread}"
    files = runner.write_inbox(arrival_order(sets, docs, expected, plan), inbox, sign)
    decl_of = {d["guid"]: _set_decl(s) for s in sets for d in s.documents}
    return sets, expected, files, decl_of


_LOADS: dict[tuple, tuple] = {}


class AfterSales:
    """Cancels the declarations customs holds, returns released ones, brings their parcels back."""

    def __init__(self, plan: returns_stage.AfterSales, submitter: Submitter, tracker: Tracker, sign) -> None:
        self.plan, self.submitter, self.tracker, self.sign = plan, submitter, tracker, sign
        self.cancels: dict[str, str] = {}    # CEB623 guid -> declaration
        self.requests: dict[str, object] = {}  # CEB625 guid -> its declaration set
        self.sorting: dict[str, str] = {}    # CEB625 guid -> fit | unfit
        self.arrived: set[str] = set()

    def step(self) -> None:
        t = self.tracker
        for s in self.plan.cancel:
            decl = _set_decl(s)
            if decl not in self.cancels.values() and decl in t.known_to_returns and decl in t.desk.released:
                doc = returns_stage.cancellation(s, parties.invt_no(t.desk.delivered[decl]))
                self.cancels[doc["guid"]] = decl
                self.submitter.add(f"cancel:{decl}", self.sign(write_message("CEB623", [doc])))
        for s, sorting in [(s, "fit") for s in self.plan.returns] + [(s, "unfit") for s in self.plan.unfit]:
            if s not in self.requests.values() and _set_decl(s) in t.released:
                doc = returns_stage.return_request(s, parties.invt_no(t.desk.delivered[_set_decl(s)]))
                self.requests[doc["guid"]], self.sorting[doc["guid"]] = s, sorting
                self.submitter.add(f"return:{_set_decl(s)}", self.sign(write_message("CEB625", [doc])))

    def parcels_due(self) -> list[dict]:
        """Arrivals for return requests the service accepted (120) whose parcel was not sent yet."""
        due = []
        for guid, s in self.requests.items():
            if guid not in self.arrived and "120" in self.tracker.receipts.get(guid, ()):
                self.arrived.add(guid)
                due.append(arrival_record(logistics_no=s.logistics["logisticsNo"], sorting=self.sorting[guid],
                                          arrived_at=now_ms() // 1000 * 1000, warehouse_code=WAREHOUSES[0][0],
                                          logistics_code=s.logistics["logisticsCode"], arrival_id=f"faults:{guid}"))
        return due

    def out_of_play(self, s) -> bool:
        """Not cleared after all (incomplete, rejected or refused): nothing to cancel or return."""
        decl = _set_decl(s)
        return self.tracker.status.get(decl, "verified") != "verified" or decl in self.tracker.refused

    def done(self) -> bool:
        sent = {_set_decl(s) for s in self.requests.values()} | set(self.cancels.values())
        decided = {d for g, (_, d) in self.sent().items() if self.tracker.receipts.get(g, set()) & FINAL}
        return all(_set_decl(s) in decided if _set_decl(s) in sent else self.out_of_play(s)
                   for s in self.plan.cancel + self.plan.returns + self.plan.unfit)

    def sent(self) -> dict[str, tuple[str, str]]:
        """CEB623/625 guid -> (cancel | return, declaration)."""
        return {**{g: ("cancel", d) for g, d in self.cancels.items()},
                **{g: ("return", _set_decl(s)) for g, s in self.requests.items()}}


def arrival_order(sets, docs: list[dict], expected: dict[str, str], plan: Plan) -> list[dict]:
    """The documents in an order a crash test can wait for: each declaration's documents close
    together (in any order among the next ``plan.spread`` declarations'), so a declaration
    completes well within the match timeout however the load is paced; the declarations
    meant to stay incomplete first, so their timeout runs out while the load still runs."""
    rnd = random.Random(plan.seed)
    position = {d["guid"]: i for i, s in enumerate(sets) for d in s.documents}
    early = {i for i, s in enumerate(sets) if expected[_set_decl(s)] == "incomplete"}

    def place(doc: dict) -> int:
        i = position[doc["guid"]]
        return (0 if i in early else i) * 1000 + rnd.randrange(plan.spread * 1000)

    return sorted(docs, key=place)


def produce_arrivals(arrivals: list[dict]) -> None:
    wire = codec()
    # The warehouse keeps trying while the broker is away (a broker-restart scenario), as a real
    # client would; the services' own clients retry the same way.
    # (retries until the delivery timeout, not ten: a restarting broker answers NOT_LEADER for seconds;
    # the producer is idempotent, so a retry writes no second copy)
    producer = kafka_io.producer(bootstrap_timeout_ms=120_000, retries=2**31 - 1)
    try:
        for record in arrivals:
            producer.send(topics.name("warehouse.arrivals"), key=record["logisticsNo"].encode(),
                          value=wire.encode("sandan.WarehouseArrival", record)).get(timeout=180)
    finally:
        producer.close()


@dataclass(frozen=True)
class Run:
    """What a scenario's logs must never hold: its tokens and its documents' personal data."""
    logs: list[Path]
    tokens: set[str]
    documents: list[dict]


RUNS: list[Run] = []  # every pipeline of the session, for the log scans of test_security.py


@dataclass
class Faults:
    """What a scenario did to the pipeline, and when."""
    at: list[tuple[str, int]] = field(default_factory=list)

    def record(self, what: str) -> None:
        self.at.append((what, now_ms()))


class Pipeline:
    def __init__(self, name: str, prefix: str, runs_dir: Path, plan: Plan, **env: str) -> None:
        self.name, self.prefix, self.plan = name, f"{prefix}{name}-", plan
        self.run_dir = runs_dir / self.prefix.rstrip("-")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.address = f"127.0.0.1:{runner.free_port()}"
        clients = self.run_dir / "gateway-clients.json"
        self.parties, self.customs = parties.gateway_clients(clients, self.address)
        self.env = environment(self.prefix, self.run_dir, SANDAN_GATEWAY_LISTEN=self.address,
                               SANDAN_GATEWAY_CLIENTS=str(clients), SANDAN_MATCH_TIMEOUT=str(plan.match_timeout_s),
                               **env)
        self.services = Services(self.env, self.run_dir, plan.workers)
        self.faults = Faults()
        self.tokens = (self.parties.token, self.customs.token)
        # the running load's submitter, tracker and document -> declaration map, for a caller's
        # progress line (the soak, tests/faults/soak.py); set once the load starts
        self.live: tuple[Submitter, Tracker, dict[str, str]] | None = None
        # one test identity per enterprise, made once for the whole suite and registered per scenario
        self.signers = SigningParties(runs_dir / "signing-parties")

    async def wait_gateway(self) -> None:
        await runner.wait_serving(self.address, self.services.procs["gateway"])

    async def run(self, inject: Callable[["Pipeline"], Awaitable[None]]) -> Evidence:
        """Start everything, run the load with ``inject`` alongside, wait for the flow, gather evidence."""
        started = time.monotonic()
        with with_prefix(self.prefix):
            await asyncio.to_thread(kafka_io.create_topics)
            # the certificates on the registry before the gateway reads it at its start
            await asyncio.to_thread(self.signers.register, parties.party_codes(), by="fault-suite")
            self.services.start_all()
            try:
                evidence = await self._run(inject)
            finally:
                self.services.stop_all()
        evidence.seconds = time.monotonic() - started
        RUNS.append(Run(evidence.logs, set(self.tokens), [d for s in evidence.sets.values() for d in s.documents]))
        return evidence

    async def _run(self, inject) -> Evidence:
        plan = self.plan
        sets, expected, files, decl_of = await asyncio.to_thread(
            prepared_load, plan.count, plan.seed, plan.incomplete, plan.spread, self.run_dir.parent / "loads",
            self.signers.sign)
        amounts, short = parties.guarantee_plan(sets)
        after_plan = returns_stage.AfterSales.choose(sets, short, plan.after_sales)
        desk = Desk(self.customs)
        desk.journal = (self.run_dir / "desk.log").open("a", encoding="utf-8")
        desk.delivered = Deliveries()
        desk.hold = after_plan.held()
        await self.wait_gateway()
        # One `sandan guarantee register` per account, side by side (each waits for the worker's outcome).
        await asyncio.gather(*(asyncio.to_thread(parties.register_guarantees, {code: amount}, self.env)
                               for code, amount in amounts.items()))
        load = Submitter(self.parties, pace_s=0.0 if plan.burst_s else plan.duration_s / max(len(files), 1),
                         stop_after_s=plan.burst_s)
        for path in files:
            load.add(path.name, path.read_bytes())
        load.close()
        extra = Submitter(self.parties)
        tracker = Tracker(desk)
        self.live = (load, tracker, decl_of)
        after = AfterSales(after_plan, extra, tracker, self.signers.sign)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(c) for c in (load.run(), extra.run(), keep_desk(desk, stop))]
        faults = asyncio.create_task(inject(self))
        guids_of: dict[str, set[str]] = {}
        for s in sets:
            guids_of[_set_decl(s)] = {d["guid"] for d in s.documents}
        submitted: set[str] = set()
        seen = 0
        # A load the gateway never takes whole ends the run as a finding, not a wait for ever.
        give_up_at = time.monotonic() + load_bound_s(plan)
        unacknowledged: list[str] = []
        try:
            deadline = None
            while True:
                await tracker.poll()
                self.services.check()
                after.step()
                due = after.parcels_due()
                if due:
                    await asyncio.to_thread(produce_arrivals, due)
                for task in tasks + [faults]:
                    if task.done() and task.exception() is not None:
                        raise task.exception()
                submitted.update(decl_of[g] for g in load.acked[seen:] if g in decl_of)
                seen = len(load.acked)
                if not tasks[0].done() and time.monotonic() > give_up_at:
                    unacknowledged = [f"item {item}: never acknowledged within {load_bound_s(plan):.0f} s of the "
                                      f"load's start ({load.reconnects} reconnects, last: {load.last_error or '-'})"
                                      for item in sorted(load.pending)]
                    (self.run_dir / "load-timeout.txt").write_text("\n".join(unacknowledged) + "\n")
                    break
                if faults.done() and tasks[0].done():
                    deadline = deadline or time.monotonic() + max(plan.settle_s, plan.duration_s)
                    if plan.burst_s and _burst_done(submitted, load.acked_at, guids_of, tracker):
                        break
                    if not plan.burst_s and tracker.settled(submitted) and after.done():
                        break
                    if time.monotonic() > deadline:
                        # The audit decides; this says what the harness was still waiting for.
                        (self.run_dir / "settle-timeout.txt").write_text(tracker.waiting_for(submitted, after))
                        break
            extra.close()
            await asyncio.sleep(0 if plan.burst_s else 3)  # anything a restarted worker still re-emits shows up now
        finally:
            stop.set()
            for task in tasks + [faults]:
                task.cancel()
            await asyncio.gather(*tasks, faults, return_exceptions=True)
            tracker.close()
        entered_at: dict[str, int] = {}
        for guid, at in load.acked_at.items():
            if guid in decl_of:
                entered_at[decl_of[guid]] = min(at, entered_at.get(decl_of[guid], at))
        if plan.burst_s:  # what a burst measures needs none of the audit's reading
            return Evidence(sets={}, expected=expected, submitted=set(entered_at), verdicts=[], cleared=[],
                            refused=[], receipts=[], ledger=[], delivered=set(desk.delivered), after_sales={},
                            accounts={}, quotas={}, entered_at=entered_at,
                            left_at=_left_at(tracker, desk), faults=[], crashed=list(self.services.crashes),
                            logs=self.services.logs(), complete=_complete(load.acked_at, guids_of),
                            not_acted_on={"gateway": unacknowledged} if unacknowledged else {})
        evidence = await self._evidence(sets, expected, entered_at, desk, tracker, after,
                                        load.refused + extra.refused, load.reconnects + extra.reconnects)
        evidence.offered = plan.rate
        if unacknowledged:
            evidence.not_acted_on["gateway"] = unacknowledged
        return evidence

    async def _evidence(self, sets, expected, entered_at, desk, tracker, after, refused, reconnects) -> Evidence:
        wire = codec()

        def read(short: str, full: str | None = None) -> list:
            return kafka_io.read_all(full or topics.name(short), timeout_s=300)

        def decoded(records) -> list[dict]:
            return [wire.decode(r.value)[1] for r in records if r.value is not None]

        answers_from = ("declarations.verdicts", "declarations.cleared", "declarations.refused", "receipts",
                        "guarantee.ledger", "returns.waybills", "returns.arrivals", "warehouse.arrivals", "deadletter")
        raw = {short: await asyncio.to_thread(read, short) for short in {*answers_from, *accounting.INPUT_TOPICS}}
        outputs = {short: decoded(raw[short]) for short in answers_from}
        inputs = {short: [_input(wire, short, r) for r in raw[short]] for short in accounting.INPUT_TOPICS}
        tables = {kind: decoded(await asyncio.to_thread(read, "", returns_app.changelog_topic(kind)))
                  for kind in (returns_app.BUCKETS, returns_app.WAYBILLS)}
        found = accounting.answers(outputs, tables[returns_app.BUCKETS], tables[returns_app.WAYBILLS],
                                   outputs["deadletter"], short_of=lambda full: full.removeprefix(self.prefix))
        first_on_kafka: dict[str, int] = {}  # document guid -> broker time of its first copy (LogAppendTime)
        for short in ("documents.order", "documents.payment", "documents.logistics", "documents.inventory"):
            for record, item in zip(raw[short], inputs[short]):
                if item.ident is not None:
                    first_on_kafka[item.ident] = min(record.timestamp, first_on_kafka.get(item.ident, record.timestamp))
        last_document_at = {}
        for s in sets:
            stamps = [first_on_kafka[d["guid"]] for d in s.documents if d["guid"] in first_on_kafka]
            if stamps:
                last_document_at[_set_decl(s)] = max(stamps)
        accounts, quotas = await self.redis_state()
        self.services.check()
        return Evidence(
            sets={_set_decl(s): s for s in sets}, expected=expected, submitted=set(entered_at),
            verdicts=outputs["declarations.verdicts"], cleared=outputs["declarations.cleared"],
            refused=outputs["declarations.refused"], receipts=outputs["receipts"], ledger=outputs["guarantee.ledger"],
            delivered=set(desk.delivered), after_sales=after.sent(), accounts=accounts, quotas=quotas,
            entered_at=entered_at, left_at=_left_at(tracker, desk), faults=list(self.faults.at),
            crashed=list(self.services.crashes), logs=self.services.logs(), reconnects=reconnects,
            refused_items=refused, restarts=dict(self.services.restarts), delivered_at=dict(desk.delivered.first_at),
            last_document_at=last_document_at, not_acted_on=accounting.not_acted_on(inputs, found))

    async def redis_state(self) -> tuple[dict, dict]:
        """The scenario's balances (assureCode -> outstanding) and quotas ((buyer key, year) -> total)
        as Redis holds them. The client is made as the services make theirs (``redis_client``, from
        this process's settings, which ``service_env`` copies): behind Sentinels the audit reads the
        primary they name, the one the services wrote to, not ``SANDAN_REDIS_URL``'s server."""
        # Redis settings given to the services alone (Pipeline(**env)) would have the audit read another Redis.
        apart = sorted(k for k in REDIS_SETTINGS if self.env.get(k) != os.environ.get(k))
        assert not apart, f"{apart} differ between this process and its services: set them in the environment"
        client = redis_client.connect()
        try:
            namespace = f"sandan:{self.prefix}"
            accounts = {a.assure_code: a.outstanding for a in await RedisAccountStore(client, namespace).accounts()}
            quotas = {q: h.total or Decimal(0) for q, h in (await RedisQuotaHashes(client, namespace).read_all()).items()}
        finally:
            await client.aclose()
        return accounts, quotas

    def sandan(self, *args: str) -> tuple[int, str]:
        """A `sandan` command against this scenario's topics and keys: (exit code, output)."""
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.env, capture_output=True,
                              text=True, cwd=config.PROJECT_ROOT, timeout=180)
        return done.returncode, done.stdout + done.stderr


def _set_decl(s) -> str:
    return declaration_id(s.order["ebpCode"], s.order["orderNo"])


def _input(wire, short: str, record) -> accounting.Input:
    try:
        value = wire.decode(record.value)[1]
    except Exception:  # noqa: BLE001 - an unreadable record is still an input to account for (by a dead letter)
        value = None
    return accounting.input_of(short, record.partition, record.offset, value)


def _left_at(tracker: Tracker, desk: parties.CustomsDesk) -> dict[str, int]:
    """When each declaration left: refused or rejected (the record's time), or delivered to customs."""
    left = dict(tracker.left_at)
    for decl, at in desk.delivered.first_at.items():
        left.setdefault(decl, at)
    return left


def _complete(acked_at: dict[str, int], guids_of: dict[str, set[str]]) -> set[str]:
    """Declarations every document of which the gateway acknowledged."""
    return {decl for decl, guids in guids_of.items() if guids and all(g in acked_at for g in guids)}


def _burst_done(submitted: set[str], acked_at: dict[str, int], guids_of: dict[str, set[str]], tracker: Tracker) -> bool:
    """A burst is measured once every declaration it completed has left the pipeline."""
    left = set(tracker.left_at) | tracker.desk.delivered.keys()
    return _complete(acked_at, {d: guids_of[d] for d in submitted}) <= left
