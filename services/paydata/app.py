"""The paydata service: a stream worker plus the realTimeDataUpload endpoint, in one process.

Flow: documents.order / documents.payment → the payment facts of each declaration (Redis);
declarations.verdicts (verified, sampled) and paydata.requests (operators) → a session and a
platDataOpen call to the platform's URL from paydata.platforms; an upload → signature,
session and comparison → paydata.uploads (raw, 3 years) + paydata.outcomes; the tick →
PAYDATA_MISSING for sessions past their deadline.
"""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiokafka import AIOKafkaProducer

from services.common import config, kafka_security, pii, redis_client, streaming, topics
from services.common.acked_producer import AckedProducer
from services.common.avro import WireError, codec
from services.common.clock import now_ms
from services.common.deadletter import dead_letter
from services.common.metrics import count_dead_letters
from services.common.outputs import Output
from services.common.partition_worker import PartitionWorker
from services.paydata import certificates, metrics, sampler
from services.paydata.engine import PaydataEngine
from services.paydata.http import Opener, upload_app
from services.paydata.store import PaydataStore, namespace

log = logging.getLogger("sandan.paydata")
KINDS = {"documents.order": ("order", "sandan.ceb.Order"), "documents.payment": ("payment", "sandan.ceb.Payment")}
SCHEMAS = {"documents.order": "sandan.ceb.Order", "documents.payment": "sandan.ceb.Payment",
           "declarations.verdicts": "sandan.Verdict", "paydata.requests": "sandan.PaydataRequest",
           "paydata.platforms": "sandan.PaydataPlatform"}


def host_port(setting: str) -> tuple[str, int]:
    host, _, port = config.get(setting).rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise SystemExit(f"setting {setting}: {config.get(setting)!r} is not host:port") from None


async def serve() -> None:
    """Until a signal: the worker and the upload endpoint (``sandan paydata serve``)."""
    try:
        share = sampler.parse_share(config.get("SANDAN_PAYDATA_SAMPLE"))
    except ValueError as exc:
        raise SystemExit(f"setting SANDAN_PAYDATA_SAMPLE: {exc}") from None
    timeout_s = config.get_int("SANDAN_PAYDATA_HTTP_TIMEOUT")
    m = metrics.paydata()
    redis = redis_client.connect()
    store = PaydataStore(redis, namespace(config.get("SANDAN_TOPIC_PREFIX")), config.get_int("SANDAN_PAYDATA_RETENTION"))
    wire = codec()

    def make_producer() -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=config.get("SANDAN_KAFKA_BOOTSTRAP"), acks="all",
                                enable_idempotence=True, request_timeout_ms=timeout_s * 1000,
                                **kafka_security.aiokafka_kwargs())

    # an upload is answered within the HTTP timeout: so is its wait for Kafka
    producer = AckedProducer(make_producer, timeout_s, "paydata")
    names = {t.name: t.full_name for t in topics.TOPICS}

    async def publish(outputs: list[Output]) -> None:
        """Returns once Kafka has every record (acks=all); a KafkaError otherwise."""
        await producer.send_all([(names[o.topic], o.key, wire.encode(o.schema, o.record)) for o in outputs])

    opener = Opener(timeout_s, m)
    follower = certificates.CertificateFollower()
    engine = PaydataEngine(store=store, open_request=opener, publish=publish,
                           book=follower.book, share=share,
                           sample_key=pii._key(), deadline_ms=config.get_int("SANDAN_PAYDATA_DEADLINE") * 1000,
                           metrics=m)
    by_name = {topics.name(short): short for short in
               ("documents.order", "documents.payment", "declarations.verdicts", "paydata.requests",
                "paydata.platforms")}
    worker = PartitionWorker("paydata", list(by_name))

    # platforms first, then the facts, then what asks: a batch holds them grouped by partition, not in time
    order = {"paydata.platforms": 0, "documents.order": 1, "documents.payment": 1}

    async def reject(msg, code: str, reason: str) -> None:
        outputs = [dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, code, None, reason)]
        await publish(outputs)
        count_dead_letters(outputs)

    async def step(short: str, record: dict) -> None:
        now = now_ms()
        if short in KINDS:
            if record.get("appType") in ("1", "2"):
                await store.put_document(KINDS[short][0], record)
        elif short == "declarations.verdicts":
            await engine.on_verdict(record, now)
        elif short == "paydata.requests":
            await engine.on_request(record, now)
        else:
            await store.set_platform(record["ebpCode"], record.get("url"))

    async def on_batch(records: list) -> None:
        for msg in sorted(records, key=lambda r: order.get(by_name[r.topic], 2)):
            short = by_name[msg.topic]
            try:
                name, record = wire.decode(msg.value)
                if name != SCHEMAS[short]:
                    raise WireError(f"expected {SCHEMAS[short]}, got {name}")
            except WireError as exc:
                await reject(msg, "UNDECODABLE", str(exc))
                continue
            try:  # Redis away: wait and retry; anything else is this record's fault, not the worker's
                await streaming.with_retry(lambda: step(short, record), log)
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the service
                log.exception("paydata: %s record %d@%d failed", short, msg.partition, msg.offset)
                await reject(msg, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}")

    async def tick() -> None:
        await engine.tick(now_ms())

    worker.timer(config.get_int("SANDAN_PAYDATA_TICK_SECONDS"), tick)
    host, port = host_port("SANDAN_PAYDATA_LISTEN")
    runner = web.AppRunner(upload_app(engine.upload, max_body=config.get_int("SANDAN_PAYDATA_MAX_BODY"),
                                      timeout_s=timeout_s), access_log=None)
    stop = asyncio.Event()
    following = asyncio.ensure_future(follower.run(stop))
    await follower.ready.wait()  # no upload is checked against a registry not read yet
    await producer.start()
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise SystemExit(f"paydata: cannot listen on {host}:{port} ({exc.strerror})") from None
    log.info("paydata: realTimeDataUpload on http://%s:%d/realTimeDataUpload", host, port)
    try:
        await worker.run(on_batch)
    finally:
        stop.set()
        following.cancel()
        await runner.cleanup()
        await opener.close()
        await producer.stop()
        await redis.aclose()
