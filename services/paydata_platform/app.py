"""``sandan platform serve-paydata``: answers customs' platDataOpen at once (10000, whatever the
order), then looks the order's payment data up, signs it and uploads it to customs'
realTimeDataUpload in the background, with bounded retries, each request within a time limit.
"""
from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
from aiohttp import web

from services.common import config
from services.common.clock import now_ms
from services.common.signing.crypto import Certificate, PrivateKey
from services.paydata_platform.responder import OpenRequest, parse_open_request, upload_text
from services.paydata_platform.source import PaydataFile

log = logging.getLogger("sandan.platform.paydata")
OPEN_PATH = "/platDataOpen"


class Responder:
    def __init__(self, *, data: PaydataFile, key: PrivateKey, cert: Certificate, upload_url: str,
                 timeout_s: float, attempts: int, lookup_s: float, delay_s: float = 0.0) -> None:
        self.data, self.key, self.cert, self.upload_url = data, key, cert, upload_url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.attempts, self.lookup_s, self.delay_s = attempts, lookup_s, delay_s
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None
        self.results: dict[str, str] = {}  # sessionID -> customs' answer code (or why none), for tests and logs

    def app(self, max_body: int) -> web.Application:
        app = web.Application(client_max_size=max_body)
        app.router.add_post(OPEN_PATH, self.open)
        return app

    async def open(self, request: web.Request) -> web.Response:
        """platDataOpen: 10000 at once (the interface wants it even for an unknown order)."""
        try:
            form = await asyncio.wait_for(request.post(), self.timeout.total)
            asked = parse_open_request(form.get("openReq") if isinstance(form.get("openReq"), str) else None)
        except (TimeoutError, ValueError, web.HTTPException):
            asked = None
        if asked is None:
            log.info("platDataOpen: a request that is no openReq; answered 10000, nothing to upload")
        else:
            task = asyncio.get_running_loop().create_task(self.answer(asked))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return web.json_response({"code": "10000", "message": "", "serviceTime": now_ms()})

    async def answer(self, asked: OpenRequest) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        record = await self.find(asked.order_no)
        if record is None:
            log.warning("platDataOpen for order %s (session %s): no payment data within %g s; nothing uploaded",
                        asked.order_no, asked.session_id, self.lookup_s)
            self.results[asked.session_id] = "NO_DATA"
            return
        text = upload_text(record, asked.session_id, now_ms(), self.key, self.cert.number)
        self.results[asked.session_id] = await self.upload(asked, text)

    async def find(self, order_no: str) -> dict | None:
        """The order's payment data, looked for again every second while the file may still get it."""
        give_up = asyncio.get_running_loop().time() + self.lookup_s
        while True:
            record = await asyncio.to_thread(self.data.find, order_no)
            if record is not None or asyncio.get_running_loop().time() >= give_up:
                return record
            await asyncio.sleep(1.0)

    async def upload(self, asked: OpenRequest, text: str) -> str:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        backoff, outcome = 0.5, "UNREACHABLE"
        for attempt in range(1, self.attempts + 1):
            try:
                async with self.session.post(self.upload_url, data={"payExInfoStr": text},
                                             allow_redirects=False) as response:
                    body = await response.content.read(64 * 1024)
                answer = json.loads(body.decode("utf-8", errors="replace") or "{}")
                outcome = str(answer.get("code")) if isinstance(answer, dict) else f"HTTP_{response.status}"
                if outcome != "20000":  # 20000: customs could not take it now; anything else is final
                    log.info("upload for order %s (session %s): customs answered %s %s", asked.order_no,
                             asked.session_id, outcome, answer.get("message", "") if isinstance(answer, dict) else "")
                    return outcome
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                outcome = f"UNREACHABLE ({type(exc).__name__})"
            log.info("upload for order %s (session %s), attempt %d of %d: %s", asked.order_no, asked.session_id,
                     attempt, self.attempts, outcome)
            if attempt < self.attempts:
                await asyncio.sleep(backoff)
                backoff *= 2
        return outcome

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.session is not None:
            await self.session.close()


def responder(key_path: Path, cert_path: Path, data_path: Path, delay_s: float = 0.0) -> Responder:
    return Responder(data=PaydataFile(data_path), key=PrivateKey.load(key_path.read_bytes()),
                     cert=Certificate.load(cert_path.read_bytes()), upload_url=config.get("SANDAN_PLATFORM_UPLOAD_URL"),
                     timeout_s=config.get_int("SANDAN_PAYDATA_HTTP_TIMEOUT"),
                     attempts=config.get_int("SANDAN_PLATFORM_UPLOAD_ATTEMPTS"),
                     lookup_s=config.get_int("SANDAN_PLATFORM_LOOKUP_SECONDS"), delay_s=delay_s)


async def serve(r: Responder, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    runner = web.AppRunner(r.app(config.get_int("SANDAN_PAYDATA_MAX_BODY")), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise SystemExit(f"platform paydata: cannot listen on {host}:{port} ({exc.strerror})") from None
        log.info("platform paydata: platDataOpen on http://%s:%d%s", host, port, OPEN_PATH)
        await (stop or asyncio.Event()).wait()
    finally:
        await r.close()
        await runner.cleanup()
