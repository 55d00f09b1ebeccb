"""HTTP of the customs side (aiohttp): the realTimeDataUpload endpoint and platDataOpen calls.

Every request has a time limit and a size limit; a body that is too large is refused unread
and nothing about the payment data is logged.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from services.common.clock import now_ms
from services.paydata.protocol import FAILED, UNREADABLE, accepted_ack, answer, open_request

log = logging.getLogger("sandan.paydata.http")
UPLOAD_PATH = "/realTimeDataUpload"
FORM_FIELD = "payExInfoStr"


def upload_app(handle: Callable[[str, int], Awaitable[tuple[str, str]]], *, max_body: int,
               timeout_s: float) -> web.Application:
    """``handle(payExInfoStr, received_at_ms) -> (code, message)`` behind POST /realTimeDataUpload."""

    async def upload(request: web.Request) -> web.Response:
        received = now_ms()
        try:
            text = await asyncio.wait_for(_form_field(request, max_body), timeout_s)
        except web.HTTPRequestEntityTooLarge:
            return _answer(UNREADABLE, f"request body larger than {max_body} bytes", 413)
        except TimeoutError:
            return _answer(UNREADABLE, f"request body not received within {timeout_s:g} s", 408)
        except ValueError as exc:
            return _answer(UNREADABLE, str(exc), 400)
        try:
            code, message = await handle(text, received)
        except Exception:  # noqa: BLE001 - one bad upload must not take the endpoint down
            log.exception("paydata: an upload could not be handled")
            code, message = FAILED, "customs could not take the upload now; send it again"
        return _answer(code, message)

    app = web.Application(client_max_size=max_body)
    app.router.add_post(UPLOAD_PATH, upload)
    return app


async def _form_field(request: web.Request, max_body: int) -> str:
    if request.content_length is not None and request.content_length > max_body:
        raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=request.content_length)
    form = await request.post()  # aiohttp stops reading past client_max_size
    value = form.get(FORM_FIELD)
    if not isinstance(value, str):
        raise ValueError(f"no form field {FORM_FIELD} (application/x-www-form-urlencoded)")
    return value


def _answer(code: str, message: str, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(answer(code, message, now_ms()), ensure_ascii=False), status=status,
                        content_type="application/json")


class Opener:
    """Calls platforms' platDataOpen in the background (a slow platform never holds the stream),
    at most ``parallel`` at once, each within ``timeout_s``, tried twice."""

    def __init__(self, timeout_s: float, metrics, parallel: int = 32, attempts: int = 2) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.metrics, self.attempts = metrics, attempts
        self.limit = asyncio.Semaphore(parallel)
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None

    def __call__(self, url: str, order_no: str, session_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._open(url, order_no, session_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open(self, url: str, order_no: str, session_id: str) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        async with self.limit:
            result = "failed"
            for attempt in range(self.attempts):
                try:
                    async with self.session.post(url, data={"openReq": open_request(order_no, session_id, now_ms())},
                                                 allow_redirects=False) as response:
                        body = await response.content.read(64 * 1024)
                    if response.status == 200 and accepted_ack(body.decode("utf-8", errors="replace")):
                        result = "acknowledged"
                        break
                    result = f"http_{response.status}" if response.status != 200 else "not_acknowledged"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    result = "unreachable"
                    log.info("paydata: platDataOpen for order %s: %s (attempt %d)", order_no, type(exc).__name__,
                             attempt + 1)
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(1.0)
            self.metrics.open_calls.labels(result=result).inc()
            if result != "acknowledged":
                log.warning("paydata: platDataOpen for order %s not acknowledged (%s); the deadline decides",
                            order_no, result)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.session is not None:
            await self.session.close()
