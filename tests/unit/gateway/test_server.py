"""The gateway process at start: a port already taken, wrong TLS files, malformed requests."""
from __future__ import annotations

import asyncio
import dataclasses
import logging

import grpc
import pytest

from services.gateway.server import GatewayServer, build_gateway, server_credentials
from tests.gateway_harness import MemoryLog, MemoryPublisher, make_certificates, register, running_gateway, settings


def run(scenario):
    return asyncio.run(asyncio.wait_for(scenario, 30))


def test_a_second_gateway_on_a_port_in_use_refuses_to_start_in_one_line(tmp_path):
    async def scenario():
        async with running_gateway(settings(tmp_path), MemoryPublisher(), MemoryLog()) as first:
            taken = dataclasses.replace(settings(tmp_path), listen=first.address)
            second = GatewayServer(taken, build_gateway(taken, MemoryPublisher(), MemoryLog()))
            try:
                with pytest.raises(SystemExit) as refused:
                    await second.start()
            finally:
                await second.server.stop(0)
            return first.address, str(refused.value)

    address, message = run(scenario())
    assert message.startswith(f"cannot listen on {address}: the address is in use")
    assert "SANDAN_GATEWAY_SHARE_PORT=1" in message and "\n" not in message


def test_a_gateway_told_to_share_its_port_starts_beside_another(tmp_path):
    async def scenario():
        shared = settings(tmp_path, share_port=True)
        async with running_gateway(shared, MemoryPublisher(), MemoryLog()) as first:
            again = dataclasses.replace(shared, listen=first.address)
            async with running_gateway(again, MemoryPublisher(), MemoryLog()) as second:
                return first.port, second.port

    first, second = run(scenario())
    assert first == second


def test_a_tls_key_that_is_not_the_certificates_is_named_in_one_line(tmp_path):
    certs = make_certificates(tmp_path / "certs", ["other"])
    wrong = settings(tmp_path, tls_cert=str(certs["server"]), tls_key=str(certs["other.key"]))
    with pytest.raises(SystemExit) as refused:
        server_credentials(wrong)
    message = str(refused.value)
    assert message.startswith(f"SANDAN_GATEWAY_TLS_KEY {certs['other.key']} is not the key of "
                              f"SANDAN_GATEWAY_TLS_CERT {certs['server']}")
    assert "\n" not in message


def test_malformed_protobuf_on_submit_is_an_invalid_argument_without_a_traceback(tmp_path, caplog):
    tokens = register(tmp_path / "clients.json", ("platform", "enterprise", ["91330106MA27XK5W3B"]))

    async def scenario():
        async with running_gateway(settings(tmp_path), MemoryPublisher(), MemoryLog()) as gw:
            async with grpc.aio.insecure_channel(gw.address) as channel:
                submit = channel.stream_stream("/sandan.gateway.v1.Gateway/Submit", request_serializer=bytes,
                                               response_deserializer=bytes)
                call = submit(iter([b"\xff\xff\xff"]), metadata=(("authorization", f"Bearer {tokens['platform']}"),))
                try:
                    async for _ in call:
                        pass
                except grpc.aio.AioRpcError as exc:
                    return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""

    with caplog.at_level(logging.INFO, logger="sandan.gateway"):
        code, details = run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "item 1: not a SubmitItem protobuf message (see schemas/proto/gateway.proto)"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
