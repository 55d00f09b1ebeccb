"""Both HTTP ends on loopback (aiohttp test servers): limits, answers, the responder's retries."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.signing.crypto import Certificate, PrivateKey, test_identity
from services.common.signing.paydata import compact_json
from services.paydata.http import upload_app
from services.paydata_platform.app import Responder
from services.paydata_platform.responder import OpenRequest
from services.paydata_platform.source import PaydataFile
from tests.unit.paydata.samples import EBP, ORDER_NO, raw_record


def _call(app: web.Application, body, **kw) -> tuple[int, dict]:
    async def go():
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/realTimeDataUpload", data=body, **kw)
            return response.status, json.loads(await response.text())
    return asyncio.run(go())


def _customs(seen: list):
    async def handle(text: str, at: int):
        seen.append(text)
        return "10000", ""
    return upload_app(handle, max_body=2048, timeout_s=5)


def test_the_form_field_reaches_the_handler_and_its_answer_goes_back():
    seen = []
    status, answer = _call(_customs(seen), {"payExInfoStr": '{"sessionID":"S1"}'})
    assert status == 200 and answer["code"] == "10000" and isinstance(answer["serviceTime"], int)
    assert seen == ['{"sessionID":"S1"}']


def test_a_body_over_the_limit_is_refused_unread_and_a_missing_field_is_named():
    seen = []
    status, answer = _call(_customs(seen), {"payExInfoStr": "x" * 5000})
    assert (status, answer["code"]) == (413, "20001") and seen == []
    status, answer = _call(_customs(seen), {"other": "x"})
    assert (status, answer["code"]) == (400, "20001") and "payExInfoStr" in answer["message"]


def test_a_handler_that_fails_answers_20000_and_the_endpoint_stays_up():
    async def broken(text, at):
        raise RuntimeError("boom")
    status, answer = _call(upload_app(broken, max_body=2048, timeout_s=5), {"payExInfoStr": "{}"})
    assert (status, answer["code"]) == (200, "20000")


def _responder(tmp_path: Path, upload_url: str, record: dict | None, attempts: int = 4) -> Responder:
    key_pem, cert_pem = test_identity(EBP)
    data = tmp_path / "paydata.jsonl"
    data.write_text(compact_json(record) + "\n" if record else "")
    return Responder(data=PaydataFile(data), key=PrivateKey.load(key_pem), cert=Certificate.load(cert_pem),
                     upload_url=upload_url, timeout_s=5, attempts=attempts, lookup_s=0)


def test_the_responder_answers_10000_at_once_even_for_nonsense(tmp_path):
    async def go():
        r = _responder(tmp_path, "http://127.0.0.1:9/none", None)
        async with TestClient(TestServer(r.app(4096))) as client:
            garbage = await client.post("/platDataOpen", data={"openReq": "not json"})
            unknown = await client.post("/platDataOpen", data={"openReq": json.dumps(
                {"orderNo": "NOPE", "sessionID": "S9", "serviceTime": 1})})
            answers = [await garbage.json(), await unknown.json()]
            await asyncio.gather(*r.tasks)
        await r.close()
        return answers, r.results
    answers, results = asyncio.run(go())
    assert [a["code"] for a in answers] == ["10000", "10000"]
    assert results == {"S9": "NO_DATA"}


def test_the_responder_retries_while_customs_answers_20000_and_keeps_the_session_id(tmp_path):
    got = []

    async def customs(request):
        got.append(json.loads((await request.post())["payExInfoStr"])["sessionID"])
        return web.json_response({"code": "20000" if len(got) < 3 else "10000", "message": ""})

    async def go():
        app = web.Application()
        app.router.add_post("/realTimeDataUpload", customs)
        async with TestServer(app) as server:
            r = _responder(tmp_path, str(server.make_url("/realTimeDataUpload")), raw_record())
            await r.answer(OpenRequest(ORDER_NO, "customs-session/原样 01", 1))
            await r.close()
            return r.results
    results = asyncio.run(go())
    assert got == ["customs-session/原样 01"] * 3 and results == {"customs-session/原样 01": "10000"}
