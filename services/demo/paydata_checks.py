"""Payment-data checks (公告2018年第179号) played end to end: platforms with keys registered,
their platDataOpen responders (``services.paydata_platform``) running in this process, a
platform that never answers, and the outcomes read back. Used by the demo and its tests.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.common import config, kafka_io, topics
from services.common.avro import codec
from services.common.clock import now_ms
from services.common.signing import registry
from services.common.signing.crypto import Certificate, PrivateKey, test_identity
from services.common.signing.paydata import compact_json
from services.demo.ports import free_port
from services.paydata_platform.app import Responder, serve
from services.paydata_platform.source import PaydataFile

CERTIFICATES = topics.BY_NAME.get(registry.TOPIC) or topics.TopicSpec(
    registry.TOPIC, "certificate number", registry.SCHEMA, retention_ms=-1, compacted=True)


def raw_payment_data(order: dict, payment: dict, **head_changes) -> dict:
    """The platform's raw payment data of a declared order (what its payment firm exchanged)."""
    head = {"guid": f"{order['guid'][:36]}", "initalRequest": f"out_trade_no={order['orderNo']}&total_fee={payment['amountPaid']}",
            "initalResponse": f"<xml><return_code>SUCCESS</return_code><transaction_id>{payment['payTransactionId']}"
                              f"</transaction_id></xml>",
            "ebpCode": order["ebpCode"], "payCode": payment["payCode"], "payTransactionId": payment["payTransactionId"],
            "totalAmount": payment["amountPaid"], "currency": "142", "verDept": "3", "payType": "1",
            "tradingTime": payment.get("payTime") or order["appTime"], "note": ""}
    head.update(head_changes)
    return {"orderNo": order["orderNo"], "payExchangeInfoHead": head,
            "payExchangeInfoLists": [{"orderNo": order["orderNo"],
                                      "goodsInfo": [{"gname": line["itemName"], "itemLink": f"https://shop.example/{line['gnum']}"}
                                                    for line in order["lines"]],
                                      "recpAccount": "6222020200000000000", "recpCode": "", "recpName": "Demo Shop Ltd"}]}


@dataclass
class Platform:
    """One platform: its key, certificate, data file and (unless it never answers) its responder."""
    code: str
    folder: Path
    delay_s: float = 0.0
    answers: bool = True
    port: int = field(default_factory=free_port)
    asked: list = field(default_factory=list)  # (orderNo, sessionID) of every openReq it took
    results: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        key_pem, cert_pem = test_identity(self.code, "sm2")
        self.key, self.cert = PrivateKey.load(key_pem), Certificate.load(cert_pem)
        (self.folder / "key.pem").write_bytes(key_pem)
        (self.folder / "cert.pem").write_bytes(cert_pem)
        self.data = self.folder / "paydata.jsonl"
        self.data.touch()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/platDataOpen"

    def add(self, record: dict) -> None:
        with self.data.open("a", encoding="utf-8") as out:
            out.write(compact_json(record) + "\n")


class _Recording(Responder):
    def __init__(self, platform: Platform, **kwargs) -> None:
        super().__init__(**kwargs)
        self.platform = platform
        platform.results = self.results  # sessionID -> customs' answer code, or why nothing was uploaded

    async def answer(self, asked) -> None:
        self.platform.asked.append((asked.order_no, asked.session_id))
        await super().answer(asked)


class Platforms:
    """The answering platforms' responders on one event loop in a background thread."""

    def __init__(self, platforms: list[Platform], upload_url: str, *, lookup_s: float = 5.0) -> None:
        self.platforms, self.upload_url, self.lookup_s = platforms, upload_url, lookup_s
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="platforms")
        self.stop: asyncio.Event | None = None
        self.tasks = []

    def __enter__(self) -> "Platforms":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    async def _start(self) -> None:
        self.stop = asyncio.Event()
        for p in self.platforms:
            if not p.answers:
                continue
            r = _Recording(p, data=PaydataFile(p.data), key=p.key, cert=p.cert, upload_url=self.upload_url,
                           timeout_s=config.get_int("SANDAN_PAYDATA_HTTP_TIMEOUT"),
                           attempts=config.get_int("SANDAN_PLATFORM_UPLOAD_ATTEMPTS"), lookup_s=self.lookup_s,
                           delay_s=p.delay_s)
            self.tasks.append(asyncio.ensure_future(serve(r, "127.0.0.1", p.port, self.stop)))
        await asyncio.sleep(0.3)  # the sites are listening

    def __exit__(self, *exc) -> None:
        async def _stop():
            self.stop.set()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def register(platforms: list[Platform]) -> None:
    """Each platform's certificate in the registry and its platDataOpen URL in paydata.platforms."""
    kafka_io.create_topics([CERTIFICATES, topics.BY_NAME["paydata.platforms"], topics.BY_NAME["paydata.requests"]])
    wire, producer, now = codec(), kafka_io.producer(), now_ms()
    for p in platforms:
        producer.send(CERTIFICATES.full_name, key=p.cert.number.encode(),
                      value=wire.encode(registry.SCHEMA, registry.record_for(p.cert, p.code, by="demo", at_ms=now)))
        producer.send(topics.name("paydata.platforms"), key=p.code.encode(),
                      value=wire.encode("sandan.PaydataPlatform",
                                        {"ebpCode": p.code, "url": p.url, "changedAt": now, "changedBy": "demo"}))
    producer.flush()
    producer.close()


def request(ebp_code: str, order_no: str, request_id: str) -> None:
    """What `sandan paydata request EBP:ORDER` publishes."""
    record = {"requestId": request_id, "orderNo": order_no, "ebpCode": ebp_code, "requestedBy": "demo",
              "requestedAt": now_ms()}
    producer = kafka_io.producer()
    producer.send(topics.name("paydata.requests"), key=order_no.encode(),
                  value=codec().encode("sandan.PaydataRequest", record))
    producer.flush()
    producer.close()


def outcomes() -> list[dict]:
    wire = codec()
    return [wire.decode(r.value)[1] for r in kafka_io.read_all(topics.name("paydata.outcomes"), timeout_s=10)]


def wait_for_outcomes(wanted: dict[str, set[str]], timeout_s: float, alive=lambda: True) -> list[dict]:
    """Outcome records once every orderNo of ``wanted`` has each of its outcome kinds (or time is up)."""
    give_up = time.monotonic() + timeout_s
    while True:
        found = outcomes()
        have: dict[str, set[str]] = {}
        for o in found:
            have.setdefault(o["orderNo"], set()).add(o["outcome"])
        if all(kinds <= have.get(order, set()) for order, kinds in wanted.items()) or time.monotonic() > give_up:
            return found
        if not alive():
            return found
        time.sleep(0.5)


def summary(found: list[dict]) -> dict[str, list[str]]:
    """orderNo → its outcome kinds in the order written (one record per outcome id)."""
    seen, out = set(), {}
    for o in found:
        if o["outcomeId"] not in seen:
            seen.add(o["outcomeId"])
            out.setdefault(o["orderNo"], []).append(o["outcome"])
    return out


def dumps(found: list[dict]) -> str:
    return json.dumps(summary(found), ensure_ascii=False)


# --- the demo's stage --------------------------------------------------------------------------
DEMO_DEADLINE_S = 6


def demo_settings() -> dict[str, str]:
    """The paydata service's settings in the demo: no sampling (the demo names its four checks) and
    a short deadline, so the late and the missing upload are decided within seconds."""
    metrics_port = config.get_int("SANDAN_PAYDATA_METRICS_PORT")  # the local Prometheus scrapes it there
    return {"SANDAN_PAYDATA_SAMPLE": "0", "SANDAN_PAYDATA_DEADLINE": str(DEMO_DEADLINE_S),
            "SANDAN_PAYDATA_LISTEN": f"127.0.0.1:{free_port()}",
            "SANDAN_PAYDATA_METRICS_PORT": str(metrics_port if _free(metrics_port) else free_port())}


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class PaydataReport:
    expected: dict = field(default_factory=dict)   # orderNo -> the outcome kinds it should get, in order
    got: dict = field(default_factory=dict)        # orderNo -> the outcome kinds it got
    cases: dict = field(default_factory=dict)      # orderNo -> what the case plays
    problem: str = ""

    @property
    def as_expected(self) -> bool:
        return not self.problem and self.got == self.expected

    def lines(self) -> list[str]:
        lines = [f"payment-data checks (公告2018年第179号; deadline {DEMO_DEADLINE_S} s in the demo)"]
        for order_no, case in self.cases.items():
            lines.append(f"  {case:36} {order_no}  {' then '.join(self.got.get(order_no, [])) or 'nothing'}")
        if self.problem:
            lines.append(f"  NOT as expected: {self.problem}")
        return lines

    def to_json(self) -> dict:
        counts: dict[str, int] = {}
        for kinds in self.got.values():
            for kind in kinds:
                counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))


def choose(sets: list, verified: set[str]) -> dict[str, list] | None:
    """Verified declarations of three platforms: two of the first (a match and a mismatch), one of
    the second (late) and one of the third (never answers)."""
    by_platform: dict[str, list] = {}
    for s in sets:
        if f"{s.order['ebpCode']}:{s.order['orderNo']}" in verified:
            by_platform.setdefault(s.order["ebpCode"], []).append(s)
    codes = sorted(by_platform, key=lambda c: -len(by_platform[c]))
    if len(codes) < 3 or len(by_platform[codes[0]]) < 2:
        return None
    return {"answers": by_platform[codes[0]][:2], "late": by_platform[codes[1]][:1], "silent": by_platform[codes[2]][:1]}


async def run_stage(sets: list, verified: set[str], env: dict, folder: Path, say) -> PaydataReport:
    """Four checks end to end against the running paydata service; the report of what came out."""
    report = PaydataReport()
    chosen = choose(sets, verified)
    if chosen is None:
        report.problem = "fewer than three platforms with verified declarations"
        return report
    answering = Platform(chosen["answers"][0].order["ebpCode"], folder / "answering")
    slow = Platform(chosen["late"][0].order["ebpCode"], folder / "slow", delay_s=DEMO_DEADLINE_S + 2)
    silent = Platform(chosen["silent"][0].order["ebpCode"], folder / "silent", answers=False)
    match, mismatch = chosen["answers"]
    late, missing = chosen["late"][0], chosen["silent"][0]
    answering.add(raw_payment_data(match.order, match.payment))
    answering.add(raw_payment_data(mismatch.order, mismatch.payment,
                                   totalAmount=mismatch.payment["amountPaid"] + 1))
    slow.add(raw_payment_data(late.order, late.payment))
    report.cases = {match.order["orderNo"]: "platform answers, data agrees",
                    mismatch.order["orderNo"]: "platform answers, amount differs",
                    late.order["orderNo"]: "platform answers after the deadline",
                    missing.order["orderNo"]: "platform never answers"}
    report.expected = {match.order["orderNo"]: ["PAYDATA_MATCH"], mismatch.order["orderNo"]: ["PAYDATA_MISMATCH"],
                       late.order["orderNo"]: ["PAYDATA_MISSING", "PAYDATA_LATE"],
                       missing.order["orderNo"]: ["PAYDATA_MISSING"]}
    upload_url = f"http://{env['SANDAN_PAYDATA_LISTEN']}/realTimeDataUpload"
    platforms = [answering, slow, silent]
    await asyncio.to_thread(register, platforms)
    with Platforms(platforms, upload_url):
        for s in (match, mismatch, late, missing):
            await asyncio.to_thread(request, s.order["ebpCode"], s.order["orderNo"], f"demo:{s.order['orderNo']}")
        say(f"  payment-data checks: asked {len(report.cases)} platforms' payment data (sandan paydata request)")
        wanted = {order_no: set(kinds) for order_no, kinds in report.expected.items()}
        found = await asyncio.to_thread(wait_for_outcomes, wanted, 3 * DEMO_DEADLINE_S + 30)
    report.got = {order_no: kinds for order_no, kinds in summary(found).items() if order_no in report.expected}
    asked = dict(answering.asked + slow.asked)
    for o in found:
        if o["orderNo"] in asked and o["sessionId"] != asked[o["orderNo"]]:
            report.problem = f"order {o['orderNo']}: the outcome names another sessionID than customs sent"
    return report
