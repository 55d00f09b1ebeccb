"""The demo's outside world: gateway clients, guarantee accounts, a customs-side subscriber."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from services.common import config
from services.tools import generator as gen
from services.common.avro import codec
from services.common.clock import CHINA, now_ms
from services.gateway.client import Credentials, GatewayClient
from services.gateway.client_registry import add_client


WAREHOUSE = "3122960RTC"  # the returns-centre warehouse's operator code: its parcels' receipts (CEB712) come to it


def party_codes() -> list[str]:
    """Every enterprise the demo plays: the parties the generator invents and the warehouse."""
    return sorted({code for table in (gen.PLATFORMS, gen.MERCHANTS, gen.PAYMENT_FIRMS, gen.CARRIERS, gen.AGENTS)
                   for code, *_ in table} | {WAREHOUSE})


def gateway_clients(path: Path, address: str) -> tuple[Credentials, Credentials]:
    """One enterprise client speaking for every party the demo plays, and customs."""
    parties = add_client(path, "demo-parties", "enterprise", party_codes())
    customs = add_client(path, "demo-customs", "customs", [])
    return Credentials(address, parties), Credentials(address, customs)


def guarantee_plan(sets, short_share: Decimal = Decimal("0.6")) -> tuple[dict[str, Decimal], str]:
    """Guaranteed amount per assureCode: ample for all but the busiest, which covers ~60 % of its tax."""
    need: dict[str, Decimal] = defaultdict(Decimal)
    for s in sets:
        if s.expected_status == "verified":
            need[s.inventory["assureCode"]] += s.order["taxTotal"]
    short = max(need, key=lambda code: (need[code], code))
    amounts = {code: (total * 3 + 1000).quantize(Decimal(1)) for code, total in need.items()}
    amounts[short] = (need[short] * short_share).quantize(Decimal(1))
    return amounts, short


def sandan(*args: str, env: dict, check: bool = True) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          cwd=config.PROJECT_ROOT, timeout=120)
    if check and done.returncode != 0:
        raise SystemExit(f"sandan demo: `sandan {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def register_guarantees(amounts: dict[str, Decimal], env: dict) -> None:
    for code, amount in sorted(amounts.items()):
        sandan("guarantee", "register", "-a", code, "--kind", "bank_guarantee", "--amount", str(amount),
               "--valid-from", "20250101", "--valid-to", "20301231", "--reason", "demo letter of guarantee",
               "--actor", "demo", "--wait", "30", env=env)


def guarantee_balances(env: dict) -> list[dict]:
    return [json.loads(line) for line in sandan("guarantee", "list", "--json", env=env).splitlines() if line.strip()]


class CustomsDesk:
    """Customs-side system: reads cleared declarations through the gateway, reports releases."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.delivered: dict[str, object] = {}
        self.deliveries = 0
        self.released: set[str] = set()  # reported: released, or accepted when held
        self.hold: set[str] = set()  # declarations customs does not release (to be cancelled)

    async def run(self, stop: asyncio.Event) -> None:
        cursor = ""
        async with GatewayClient(self.credentials) as gw:
            while not stop.is_set():
                async for item in gw.subscribe(cursor, idle_timeout=1.0):
                    cursor = item.cursor
                    self.deliveries += 1
                    self.delivered[item.declaration_id] = item
                    if item.declaration_id in self.released:
                        continue
                    # accepted and numbered (120); released (800) unless held back for a cancellation
                    held = item.declaration_id in self.hold
                    await gw.report(ebp_code=item.ebp_code, order_no=item.order_no, status="120" if held else "800",
                                    decided_at=_china_now(), invt_no=invt_no(item),
                                    report_id=f"{'accept' if held else 'release'}:{item.declaration_id}")
                    self.released.add(item.declaration_id)


def invt_no(item) -> str:
    """The inventory number order_match gave the cleared declaration (carried on its verdict)."""
    _, verdict = codec().decode(item.verdict)
    return (verdict.get("inventory") or {}).get("invtNo") or ""


def _china_now() -> str:
    from datetime import datetime
    return datetime.fromtimestamp(now_ms() // 1000, CHINA).strftime("%Y%m%d%H%M%S")

