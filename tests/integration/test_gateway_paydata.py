"""Customs reads payment-data check outcomes through the gateway (PaydataChecks), resumable by
cursor; an enterprise may not."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common.avro import codec
from services.paydata import outcomes
from services.paydata.compare import Mismatch
from services.paydata.sessions import MATCH, MISMATCH, Session
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import PLATFORM, kafka_gateway, produce, register, settings

pytestmark = pytest.mark.integration


def _outcome(n: int, kind: str, found=()) -> tuple[bytes, bytes]:
    session = Session(f"S{n}", f"{PLATFORM}:O{n}", PLATFORM, f"O{n}", "sample", 1_000, 121_000)
    out = outcomes.outcome(session, kind, list(found), 2_000, 1_500, "0A1B")
    return out.key, codec().encode(out.schema, out.record)


def test_customs_reads_paydata_outcomes_and_resumes_and_an_enterprise_may_not(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("customs", "customs", []), ("shop", "enterprise", [PLATFORM]))
    produce("paydata.outcomes", [_outcome(1, MATCH), _outcome(2, MISMATCH, [Mismatch("totalAmount", "differs")])])

    async def read():
        async with kafka_gateway(settings(tmp_path)) as gw:
            async with gw.client(tokens["customs"]) as customs:
                first = [c async for c in customs.paydata_checks(limit=1)]
                rest = [c async for c in customs.paydata_checks(first[-1].cursor, idle_timeout=1.5)]
            async with gw.client(tokens["shop"]) as shop:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    _ = [c async for c in shop.paydata_checks(idle_timeout=1.5)]
        return first, rest, refused.value.code()

    first, rest, refused = asyncio.run(read())
    got = {c.order_no: c for c in first + rest}
    assert len(first + rest) == 2 and set(got) == {"O1", "O2"}
    assert got["O1"].outcome == MATCH and got["O1"].session_id == "S1" and got["O1"].uploaded_at_ms == 1_500
    assert [(m.field, m.message) for m in got["O2"].mismatches] == [("totalAmount", "differs")]
    assert codec().decode(got["O2"].record)[1]["outcome"] == MISMATCH
    assert refused == grpc.StatusCode.PERMISSION_DENIED
