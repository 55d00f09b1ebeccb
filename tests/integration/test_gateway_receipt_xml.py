"""Receipts as CEB XML files on the real Kafka: `sandan gateway receipts --format xml --out DIR`
against an in-process gateway writes one file per message, the message in its envelope signed by
sandan (both valid against their XSDs, the envelope verifying with sandan's certificate), and a
second run resumes where the first stopped."""
from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from services.common import config
from services.common.avro import codec
from services.common.ceb import xsd
from services.tools.generator import generate
from services.common.rates import load_rates
from services.common.signing import dxp
from services.common.signing.crypto import PrivateKey, make_certificate
from services.gateway.receipt_envelopes import ReceiptSigner
from services.common.receipts import receipt
from services.tax_guarantee.tax_bill import tax_bill
from tests.gateway_harness import gateway_topics  # noqa: F401 - a fixture
from tests.gateway_harness import kafka_gateway, produce, register, settings

pytestmark = pytest.mark.integration

XSD_DIR = Path(os.environ.get("CEB_XSD_DIR") or config.PROJECT_ROOT.parent / "shared" / "ceb" / "xsd")
SETS = generate(4, fault_share=0, seed=5)
PLATFORM = SETS[0].order["ebpCode"]
NOW_MS = 1749960000000


def order_receipt(n: int, receiver: str = PLATFORM) -> dict:
    return dict(receipt(SETS[n].order, "120", "verified", [], NOW_MS), receiver=receiver)


def bill() -> dict:
    s = SETS[0]
    inventory = dict(s.inventory, invtNo="29912025I000000001", assureCode=PLATFORM)
    verdict = {"declarationId": f"{PLATFORM}:{s.order['orderNo']}", "ebpCode": PLATFORM, "orderNo": s.order["orderNo"],
               "assureCode": PLATFORM, "inventory": inventory, "customsTax": Decimal("0.00"),
               "valueAddedTax": Decimal("12.34"), "consumptionTax": Decimal("5.67"),
               "taxableValue": s.order["goodsValue"] + s.order["freight"]}
    return tax_bill(verdict, NOW_MS, load_rates())


def produce_receipts(receipts: list[dict]) -> None:
    produce("receipts", [(r["receiver"].encode(), codec().encode("sandan.Receipt", r)) for r in receipts])


async def cli(out: Path, env: dict) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "gateway", "receipts", "--format", "xml", "--out", str(out),
        "--idle-timeout", "2", env=env, cwd=config.PROJECT_ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    return process.returncode, err.decode()


def test_receipts_become_xsd_valid_files_and_a_second_run_resumes(gateway_topics, tmp_path):
    tokens = register(tmp_path / "clients.json", ("platform", "enterprise", [PLATFORM]))
    first = [order_receipt(0), order_receipt(1, "OTHER00001"), bill(), order_receipt(2)]
    later = order_receipt(3)
    produce_receipts(first)
    out = tmp_path / "inbox"

    key = PrivateKey.generate("sm2")
    certificate = make_certificate(key, "sandan")

    async def scenario():
        async with kafka_gateway(settings(tmp_path), signer=ReceiptSigner(key, certificate, "DXPSANDAN0000001")) as gw:
            env = dict(os.environ, SANDAN_GATEWAY_ADDRESS=gw.address, SANDAN_GATEWAY_TOKEN=tokens["platform"],
                       SANDAN_GATEWAY_CREDENTIALS="", PYTHONPATH=str(config.PROJECT_ROOT))
            once = await cli(out, env)
            names = sorted(p.name for p in out.iterdir())
            produce_receipts([later])
            again = await cli(out, env)
            return once, names, again

    once, names, again = asyncio.run(scenario())
    assert once[0] == 0, once[1]
    xml_names = [n for n in names if n.endswith(".xml")]
    assert set(names) - set(xml_names) == {".sandan-cursor"}  # no temporary file left behind
    assert sorted(n.split("_")[0] for n in xml_names) in (["CEB312", "CEB816"], ["CEB312", "CEB312", "CEB816"])
    assert again[0] == 0 and "1 file(s), 1 receipt(s)" in again[1], again[1]  # only what came after
    schema, envelope_schema = xsd.schema_for(XSD_DIR), xsd.schema_for(XSD_DIR, xsd.DXP_SCHEMA_FILE)
    guids = []
    for path in sorted(out.glob("*.xml")):
        signed = etree.parse(str(path)).getroot()
        assert xsd.problems(envelope_schema, signed) == [], path.name
        verified, envelope = dxp.verify(signed, certificate)
        assert verified.number == certificate.number and envelope.receiver_code == PLATFORM
        root = etree.fromstring(envelope.data)
        assert xsd.problems(schema, root) == [], path.name
        assert path.name == f"{path.name.split('_')[0]}_{root.get('guid')}.xml"
        guids += [e.text for e in root.iter("{http://www.chinaport.gov.cn/ceb}guid")]
    mine = [r["guid"] for r in first + [later] if r["receiver"] == PLATFORM]
    assert all(g in guids for g in mine) and first[1]["guid"] not in guids
