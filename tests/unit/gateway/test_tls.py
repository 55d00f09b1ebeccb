"""TLS and mutual TLS: certificates made here with openssl; the client certificate must name the client."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from services.gateway.server import check_listen
from tests.gateway_harness import (MemoryLog, MemoryPublisher, delivered, make_certificates, register, running_gateway,
                                   settings)

PLATFORM = "91330106MA27XK5W3B"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"), ["customs-a", "customs-b"])


@pytest.fixture
def tokens(tmp_path):
    return register(tmp_path / "clients.json", ("customs-a", "customs", []), ("customs-b", "customs", []))


async def report_status(gw, token, **tls) -> grpc.StatusCode:
    async with gw.client(token, **tls) as client:
        try:
            await client.report(ebp_code=PLATFORM, order_no="SO1", status="120", timeout=5)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                assert "certificate does not name client" in exc.details()
            return exc.code()
    return grpc.StatusCode.OK


def test_tls_serves_clients_that_trust_its_ca_and_nobody_in_plaintext(tmp_path, certs, tokens):
    tls = settings(tmp_path, tls_cert=str(certs["server"]), tls_key=str(certs["server.key"]))

    async def scenario():
        async with running_gateway(tls, MemoryPublisher(), MemoryLog(), delivered(f"{PLATFORM}:SO1")) as gw:
            return (await report_status(gw, tokens["customs-a"], ca=str(certs["ca"])),
                    await report_status(gw, tokens["customs-a"]))

    assert asyncio.run(scenario()) == (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)


def test_mutual_tls_binds_the_certificate_to_the_client_id(tmp_path, certs, tokens):
    mtls = settings(tmp_path, tls_cert=str(certs["server"]), tls_key=str(certs["server.key"]),
                    client_ca=str(certs["ca"]))

    def own(name):
        return {"ca": str(certs["ca"]), "cert": str(certs[name]), "key": str(certs[f"{name}.key"])}

    async def scenario():
        async with running_gateway(mtls, MemoryPublisher(), MemoryLog(), delivered(f"{PLATFORM}:SO1")) as gw:
            return (await report_status(gw, tokens["customs-a"], **own("customs-a")),
                    await report_status(gw, tokens["customs-a"], **own("customs-b")),
                    await report_status(gw, tokens["customs-a"], ca=str(certs["ca"])))

    matching, borrowed, without = asyncio.run(scenario())
    assert matching == grpc.StatusCode.OK
    assert borrowed == grpc.StatusCode.UNAUTHENTICATED  # valid certificate, but of another client
    assert without == grpc.StatusCode.UNAVAILABLE  # the handshake itself fails


def test_plaintext_is_refused_off_loopback(tmp_path):
    with pytest.raises(SystemExit, match="TLS"):
        check_listen(settings(tmp_path, listen="0.0.0.0:50051"))
    check_listen(settings(tmp_path, listen="127.0.0.1:50051"))
    check_listen(settings(tmp_path, listen="0.0.0.0:50051", tls_cert="c.pem", tls_key="k.pem"))
