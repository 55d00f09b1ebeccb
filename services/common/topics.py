"""Every Kafka topic sandan uses, declared once: name, key, partitions, retention.

All document topics share one partition count and are keyed by ``orderNo`` (the one key
the four documents of a declaration all carry; a waybill has no ``ebpCode``), so one
order_match partition sees every document of a declaration without a repartition.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.common import config

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str                      # what the record key is
    value: str                    # Avro record name of the value
    retention_ms: int = 7 * DAY_MS  # -1 keeps forever
    compacted: bool = False
    document_topic: bool = False  # co-partitioned with the other document topics
    doc: str = ""

    @property
    def full_name(self) -> str:
        return config.get("SANDAN_TOPIC_PREFIX") + self.name

    def configs(self) -> dict[str, str]:
        configs = {"cleanup.policy": "compact" if self.compacted else "delete", "retention.ms": str(self.retention_ms)}
        if self.document_topic:
            # A document's arrival is when the broker took it, by the broker's clock: the match
            # timeout counts from there, whatever clock the sender's producer had.
            configs["message.timestamp.type"] = "LogAppendTime"
        return configs


TOPICS: list[TopicSpec] = [
    TopicSpec("documents.order", "orderNo", "sandan.ceb.Order", document_topic=True, doc="CEB311 orders"),
    TopicSpec("documents.payment", "orderNo", "sandan.ceb.Payment", document_topic=True, doc="CEB411 payments"),
    TopicSpec("documents.logistics", "orderNo", "sandan.ceb.Logistics", document_topic=True, doc="CEB511 waybills"),
    TopicSpec("documents.inventory", "orderNo", "sandan.ceb.Inventory", document_topic=True,
              doc="CEB621 inventory declarations"),
    TopicSpec("documents.cancel", "orderNo", "sandan.ceb.InvtCancel", document_topic=True,
              doc="CEB623 cancellations"),
    TopicSpec("documents.refund", "orderNo", "sandan.ceb.InvtRefund", document_topic=True,
              doc="CEB625 return requests"),
    TopicSpec("documents.logistics_status", "logisticsNo", "sandan.ceb.LogisticsStatus",
              doc="CEB513 waybill sign-for status"),
    TopicSpec("documents.delivery", "logisticsNo", "sandan.ceb.Delivery",
              doc="CEB711 warehouse entry details (returns-centre arrivals)"),
    TopicSpec("declarations.verdicts", "orderNo", "sandan.Verdict", retention_ms=30 * DAY_MS,
              doc="every final verdict (verified, rejected, incomplete)"),
    TopicSpec("declarations.matched", "orderNo", "sandan.Verdict", retention_ms=30 * DAY_MS,
              doc="verified declarations with tax, for the guarantee service"),
    TopicSpec("declarations.cleared", "orderNo", "sandan.Verdict", retention_ms=30 * DAY_MS,
              doc="verified declarations whose tax the guarantee covered: what customs reads"),
    TopicSpec("declarations.refused", "orderNo", "sandan.Verdict", retention_ms=30 * DAY_MS,
              doc="verified declarations refused by the guarantee service (GUARANTEE_*)"),
    TopicSpec("guarantee.commands", "assureCode", "sandan.GuaranteeCommand", retention_ms=30 * DAY_MS,
              doc="register/amend/freeze/... accounts, void and settle tax bills"),
    TopicSpec("guarantee.ledger", "assureCode", "sandan.LedgerEntry", retention_ms=-1,
              doc="append-only, never compacted: every balance change (rebuilds Redis)"),
    TopicSpec("guarantee.warnings", "assureCode", "sandan.GuaranteeWarning", retention_ms=30 * DAY_MS,
              doc="utilisation thresholds crossed, expiry approaching"),
    TopicSpec("customs.reports", "orderNo", "sandan.CustomsReport", retention_ms=90 * DAY_MS,
              doc="customs decisions (120/399/800/100) reported through the gateway"),
    TopicSpec("quota.releases", "declarationId", "sandan.QuotaRelease", retention_ms=400 * DAY_MS,
              doc="annual quota given back by cancellations and returns (rebuilds the quotas with the verdicts)"),
    TopicSpec("warehouse.arrivals", "logisticsNo", "sandan.WarehouseArrival", retention_ms=90 * DAY_MS,
              doc="returned parcels at the returns-centre warehouse, with sorting result"),
    TopicSpec("receipts", "receiver enterprise code", "sandan.Receipt", retention_ms=30 * DAY_MS,
              doc="answers to every document, addressed to an enterprise"),
    TopicSpec("order_match.ticks", "none (explicit partition)", "bytes", retention_ms=3600 * 1000,
              document_topic=True, doc="clock ticks into every order_match partition (expiry runs in-stream)"),
    TopicSpec("returns.ticks", "none (explicit partition)", "bytes", retention_ms=3600 * 1000,
              document_topic=True, doc="clock ticks into every returns partition (expiry runs in-stream)"),
    TopicSpec("returns.arrivals", "orderNo", "sandan.WarehouseArrival", retention_ms=90 * DAY_MS, document_topic=True,
              doc="returns-internal: returned parcels re-keyed by the order they belong to"),
    TopicSpec("returns.waybills", "logisticsNo", "sandan.WaybillLink", retention_ms=90 * DAY_MS,
              doc="returns-internal: waybill number -> orderNo of cleared declarations"),
    TopicSpec("paydata.requests", "orderNo", "sandan.PaydataRequest", retention_ms=30 * DAY_MS,
              doc="operators' payment-data check requests (sandan paydata request)"),
    TopicSpec("paydata.platforms", "ebpCode", "sandan.PaydataPlatform", retention_ms=-1, compacted=True,
              doc="registry: each platform's platDataOpen URL (sandan paydata platform add)"),
    TopicSpec("paydata.outcomes", "orderNo", "sandan.PaydataOutcome", retention_ms=400 * DAY_MS,
              doc="payment-data check outcomes (MATCH, MISMATCH, LATE, MISSING): what customs reads"),
    TopicSpec("paydata.uploads", "orderNo", "sandan.PaydataUpload", retention_ms=3 * 366 * DAY_MS,
              doc="platforms' signed payment-data uploads as received, kept 3 years (公告2018年第179号)"),
    TopicSpec("certificates", "certificate number", "sandan.Certificate", retention_ms=-1, compacted=True,
              doc="registry: signing certificates bound to enterprise codes, revocations (sandan certs)"),
    TopicSpec("deadletter", "source key", "sandan.DeadLetter", retention_ms=30 * DAY_MS,
              doc="undecodable or invalid input with the reason"),
]
BY_NAME = {t.name: t for t in TOPICS}
TOPIC_OF_KIND = {"order": "documents.order", "payment": "documents.payment",
                 "logistics": "documents.logistics", "inventory": "documents.inventory",
                 "cancel": "documents.cancel", "refund": "documents.refund",
                 "logistics_status": "documents.logistics_status", "delivery": "documents.delivery"}


def name(short: str) -> str:
    """Full topic name (with the configured prefix) of a declared topic."""
    return BY_NAME[short].full_name


def partitions_of(spec: TopicSpec) -> int:
    return config.get_int("SANDAN_TOPIC_PARTITIONS")


def key_of(doc: dict, spec: TopicSpec) -> bytes:
    """The record key a document gets on its topic."""
    if spec.key == "orderNo":
        return doc["orderNo"].encode()
    if spec.key == "logisticsNo":
        # CEB711 carries its waybill numbers on the lines; every other kind on the head.
        number = doc.get("logisticsNo") or next((line.get("logisticsNo") for line in doc.get("lines", ())), "")
        return (number or "").encode()
    raise KeyError(f"{spec.name}: no key rule for {spec.key}")
