"""The parties' receipts desk: every receipt addressed to the demo's enterprises, read through the
gateway as the standard's XML messages (format CEB_XML), each in its envelope signed by sandan
(dxp:DxpMsg), kept as files an enterprise's connector would pick up (the envelope), and checked
against the official XSDs (message and envelope) when ``CEB_XSD_DIR`` names them. ``verify``
checks every envelope's signature with sandan's published certificate."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from lxml import etree

from services.common.ceb import xsd
from services.gateway.client import Credentials, GatewayClient
from services.gateway.receipt_files import root_guid, write_atomically


class ReceiptsDesk:
    def __init__(self, credentials: Credentials, folder: Path, xsd_dir: str | None) -> None:
        self.credentials, self.folder, self.xsd_dir = credentials, folder, xsd_dir
        self.seen: dict[str, str] = {}       # receipt guid → message code (a resumed stream may repeat some)
        self.messages: Counter[str] = Counter()
        self.valid: Counter[str] = Counter()  # receipts inside messages the XSD accepts, by code
        self.problems: list[str] = []         # the first few XSD problems, for the report
        self.envelopes: set[Path] = set()     # files holding a signed envelope
        self.envelopes_valid: set[Path] = set()  # envelopes the DxpMsg XSD accepts
        self.last_at = time.monotonic()

    @property
    def delivered(self) -> Counter[str]:
        return Counter(self.seen.values())

    async def run(self, stop: asyncio.Event) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        schema = await asyncio.to_thread(xsd.schema_for, self.xsd_dir) if self.xsd_dir else None
        envelope_schema = (await asyncio.to_thread(xsd.schema_for, self.xsd_dir, xsd.DXP_SCHEMA_FILE)
                           if self.xsd_dir else None)
        cursor = ""
        async with GatewayClient(self.credentials) as gw:
            while not stop.is_set():
                async for item in gw.receipts(cursor, xml=True, idle_timeout=1.0):
                    cursor = item.cursor
                    await asyncio.to_thread(self._take, item.xml, schema, envelope_schema)

    def _take(self, message, schema, envelope_schema=None) -> None:
        code = message.message_type
        new = list(dict.fromkeys(g for g in message.receipt_guids if g not in self.seen))
        self.last_at = time.monotonic()
        self.messages[code] += 1
        path = self.folder / f"{code}_{root_guid(message.payload) or message.receipt_guids[0]}.xml"
        write_atomically(path, message.signed_envelope or message.payload)
        if message.signed_envelope:
            self.envelopes.add(path)
            if envelope_schema is not None:
                found = xsd.problems(envelope_schema, etree.fromstring(message.signed_envelope))
                if not found:
                    self.envelopes_valid.add(path)
                self.problems += [f"{code} envelope: {p.path}: {p.message}" for p in found[:2]][
                    :max(0, 5 - len(self.problems))]
        if schema is not None:
            found = xsd.problems(schema, etree.fromstring(message.payload))
            if found:
                self.problems += [f"{code}: {p.path}: {p.message}" for p in found[:2]][:max(0, 5 - len(self.problems))]
            else:
                self.valid[code] += len(new)
        self.seen.update((g, code) for g in new)

    def verify(self, certificate) -> tuple[int, list[str]]:
        """How many kept envelopes verify with ``certificate`` (sandan's), and the first failures."""
        from services.common.signing import dxp
        from services.common.signing.crypto import SignatureError
        verified, failures = 0, []
        for path in sorted(self.envelopes):
            try:
                dxp.verify(etree.fromstring(path.read_bytes()), certificate)
                verified += 1
            except SignatureError as exc:
                failures.append(f"{path.name}: {exc.reason} {exc.message}")
        return verified, failures[:5]

    async def settle(self, expected: dict[str, int], quiet_s: float = 3, limit_s: float = 30) -> None:
        """Until every expected receipt count is reached, or nothing came for ``quiet_s`` seconds
        (the services publish receipts after the steps the demo waits for)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            delivered = self.delivered
            if all(delivered[code] >= n for code, n in expected.items()) \
                    or time.monotonic() - self.last_at > quiet_s:
                return
            await asyncio.sleep(0.2)
