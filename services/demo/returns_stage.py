"""The demo's after-sales: cancellations before release, returns after it, the warehouse.

Cancellations (CEB623) and return requests (CEB625) go in through the gateway like every
other document; the returns-centre warehouse reports parcels with `sandan warehouse arrive`.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


from services.common import config, kafka_io, redis_client, topics
from services.common.avro import codec
from services.common.ceb.writer import write_message
from services.common.clock import CHINA, now_ms
from services.demo import parties
from services.gateway.client import GatewayClient, xml_item
from services.order_match.decide import declaration_id
from services.common.quota.store import RedisQuotaStore

_CANCEL_FIELDS = ("customsCode", "orderNo", "ebpCode", "ebpName", "ebcCode", "ebcName", "logisticsNo", "logisticsCode",
                  "logisticsName", "buyerIdType", "buyerIdNumber", "buyerName", "buyerTelephone", "agentCode",
                  "agentName")


def _head(s, message: str, invt_no: str) -> dict:
    doc = {k: s.inventory[k] for k in _CANCEL_FIELDS if k in s.inventory}
    doc.update(message=message, guid=str(uuid.uuid4()).upper(), appType="1", appStatus="2",
               appTime=datetime.fromtimestamp(now_ms() // 1000, CHINA).strftime("%Y%m%d%H%M%S"),
               invtNo=invt_no)
    return doc


def cancellation(s, invt_no: str) -> dict:
    """A CEB623 for set ``s``, naming the inventory number customs gave (``invt_no``)."""
    return dict(_head(s, "CEB623", invt_no), reason="buyer cancelled the order before release")


def return_request(s, invt_no: str) -> dict:
    lines = [{"gnum": line["gnum"], "gcode": line["gcode"], "gname": line["gname"], "qty": line["qty"],
              "unit": line["unit"]} for line in s.inventory["lines"]]
    return dict(_head(s, "CEB625", invt_no), reason="goods returned by the buyer", lines=lines)


def cleared_invt_no(cleared: dict, s) -> str:
    """The invtNo order_match gave set ``s``, from its cleared verdict."""
    return cleared[declaration_id(s.order["ebpCode"], s.order["orderNo"])]["inventory"]["invtNo"]


@dataclass
class AfterSales:
    cancel: list = field(default_factory=list)     # sets to cancel before release
    returns: list = field(default_factory=list)    # sets whose goods come back fit
    unfit: list = field(default_factory=list)      # sets whose goods fail sorting

    @classmethod
    def choose(cls, sets, short: str, n: int = 3) -> "AfterSales":
        good = [s for s in sets if s.expected_status == "verified" and s.inventory["assureCode"] != short]
        return cls(cancel=good[:n], returns=good[n:2 * n], unfit=good[2 * n:2 * n + 1])

    def held(self) -> set[str]:
        return {declaration_id(s.order["ebpCode"], s.order["orderNo"]) for s in self.cancel}


async def buyer_quotas(plan: AfterSales, cleared: dict) -> dict[str, Decimal]:
    """Year-to-date taxable value of each buyer the after-sales touch (keyed hashes, no ID numbers)."""
    client = redis_client.connect()
    store = RedisQuotaStore(client, f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}")
    try:
        quotas = {}
        for s in plan.cancel + plan.returns + plan.unfit:
            verdict = cleared.get(declaration_id(s.order["ebpCode"], s.order["orderNo"]))
            if verdict and verdict.get("buyerKey"):
                quotas[verdict["buyerKey"]] = await store.year_to_date(verdict["buyerKey"], verdict["quotaYear"])
        return quotas
    finally:
        await client.aclose()


def _unsigned(xml: bytes) -> bytes:
    return xml


async def run(plan: AfterSales, credentials, env: dict, say, cleared: dict, sign=_unsigned) -> dict:
    """Send the cancellations and returns (each message through ``sign``, its sender's signature),
    bring the parcels back, count the decisions."""
    quotas_before = await buyer_quotas(plan, cleared)
    cancels = [cancellation(s, cleared_invt_no(cleared, s)) for s in plan.cancel]
    requests = [return_request(s, cleared_invt_no(cleared, s)) for s in plan.returns + plan.unfit]
    async with GatewayClient(credentials) as gw:
        items = [xml_item(sign(write_message("CEB623", cancels)), "cancellations"),
                 xml_item(sign(write_message("CEB625", requests)), "returns")]
        answers = [a async for a in gw.submit(iter(items))]
    refused = [r.return_info for a in answers for r in a.refused]
    if refused:
        raise SystemExit(f"sandan demo: the gateway refused after-sales documents: {refused}")
    say(f"  sent {len(cancels)} cancellations and {len(requests)} return requests through the gateway")
    final = _wait_receipts({d["guid"] for d in cancels}, {d["guid"] for d in requests},
                           on_accepted=lambda: _arrivals(plan, env), timeout_s=120)
    say(f"  warehouse reported {len(plan.returns)} parcels fit for resale and {len(plan.unfit)} unfit")
    quotas_after = await buyer_quotas(plan, cleared)
    say("  annual quota of the buyers concerned (year-to-date taxable value, CNY; buyer shown by keyed hash):")
    for buyer in sorted(quotas_before):
        say(f"    {buyer[:12]}…  {quotas_before[buyer]:>10.2f} -> {quotas_after.get(buyer, Decimal(0)):>10.2f}")
    return {"cancelled": sum(1 for d in cancels if final.get(d["guid"]) == "399"),
            "returns_completed": sum(1 for d in requests if final.get(d["guid"]) == "399"),
            "returns_refused": sum(1 for d in requests if final.get(d["guid"]) == "100")}


def _arrivals(plan: AfterSales, env: dict) -> None:
    for s, sorting in [(s, "fit") for s in plan.returns] + [(s, "unfit") for s in plan.unfit]:
        parties.sandan("warehouse", "arrive", "--logistics-no", s.logistics["logisticsNo"], "--logistics-code",
                       s.logistics["logisticsCode"], "--sorting", sorting, "--warehouse", parties.WAREHOUSE, env=env)


def _wait_receipts(cancels: set[str], requests: set[str], *, on_accepted, timeout_s: float) -> dict[str, str]:
    """The final receipt status of each cancellation (CEB624) and return request (CEB626).

    A return request is first accepted (120) and decided when its parcel arrives (399 or 100),
    so the parcels are sent once every request has been accepted.
    """
    wire = codec()
    tail = kafka_io.TopicTail(topics.name("receipts"))
    status: dict[str, str] = {}
    arrived = False
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in tail.poll(300):
                receipt = wire.decode(record.value)[1]
                guid = receipt["documentGuid"]
                if guid in cancels or (guid in requests and (receipt["returnStatus"] != "120"
                                                             or guid not in status)):
                    status[guid] = receipt["returnStatus"]
            if not arrived and requests <= status.keys():
                on_accepted()
                arrived = True
            if cancels <= status.keys() and all(status.get(g) in ("399", "100") for g in requests):
                break
    finally:
        tail.close()
    return status


def sign_for(s) -> dict:
    """A CEB513: the carrier reports the parcel of set ``s`` signed for by the buyer."""
    stamp = datetime.fromtimestamp(now_ms() // 1000, CHINA).strftime("%Y%m%d%H%M%S")
    waybill = s.logistics
    return {"message": "CEB513", "guid": str(uuid.uuid4()).upper(), "appType": "1", "appTime": stamp,
            "appStatus": "2", "logisticsCode": waybill["logisticsCode"], "logisticsName": waybill["logisticsName"],
            "logisticsNo": waybill["logisticsNo"], "logisticsStatus": "S", "logisticsTime": stamp}


async def signed_for(sets, credentials, cleared: dict, say, n: int = 5, sign=_unsigned) -> int:
    """The carriers of ``n`` cleared declarations send their sign-for status through the gateway
    (answered with CEB514 receipts); how many were sent."""
    chosen = [s for s in sets if declaration_id(s.order["ebpCode"], s.order["orderNo"]) in cleared][:n]
    if not chosen:
        return 0
    async with GatewayClient(credentials) as gw:
        message = sign(write_message("CEB513", [sign_for(s) for s in chosen]))
        answers = [a async for a in gw.submit(iter([xml_item(message, "sign-for")]))]
    refused = [r.return_info for a in answers for r in a.refused]
    if refused:
        raise SystemExit(f"sandan demo: the gateway refused sign-for statuses: {refused}")
    say(f"  carriers reported {len(chosen)} parcels signed for (CEB513) through the gateway")
    return len(chosen)
