"""Settings, read from ``SANDAN_*`` environment variables with code defaults.

One table declares every setting (name, default, meaning); ``sandan config`` prints it as
Markdown for the README, so the documentation cannot drift from the code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    doc: str


SETTINGS: list[Setting] = [
    Setting("SANDAN_KAFKA_BOOTSTRAP", "127.0.0.1:19092", "Kafka bootstrap servers (host:port,...)"),
    Setting("SANDAN_KAFKA_PORT", "19092", "Port of the local Kafka broker listener (`make up`)"),
    Setting("SANDAN_KAFKA_CONTROLLER_PORT", "19093", "Port of the local KRaft controller listener"),
    Setting("SANDAN_KAFKA_HEAP", "512m", "Heap (-Xmx/-Xms) of the local Kafka broker"),
    Setting("SANDAN_KAFKA_VERSION", "4.1.1", "Apache Kafka version the local stack fetches from Maven Central"),
    Setting("SANDAN_REDIS_URL", "redis://127.0.0.1:16379/0", "Redis URL for quotas and guarantee balances"),
    Setting("SANDAN_REDIS_PORT", "16379", "Port of the local Redis server (`make up`)"),
    Setting("SANDAN_LOCAL_DIR", str(PROJECT_ROOT / ".local"), "Data, logs and pid files of the local stack"),
    Setting("SANDAN_STACK_TIMEOUT", "60", "Seconds `make up` waits for Kafka and Redis to answer before giving up"),
    Setting("SANDAN_TOPIC_PARTITIONS", "4", "Partitions of every document topic (all co-partitioned)"),
    Setting("SANDAN_TOPIC_PREFIX", "", "Prefix for every topic name (isolates test runs and tenants)"),
    Setting("CEB_XSD_DIR", "", "Folder with the official CEB XSDs; when set, XML is also validated against them"),
    Setting("SANDAN_CEB_MAX_BYTES", "10485760", "Largest CEB XML message accepted, in bytes (larger input is refused unparsed)"),
    Setting("SANDAN_TAX_RATES", "", "CSV of HS prefix → VAT and consumption-tax rates (default: the shipped table)"),
    Setting("SANDAN_TAX_TOLERANCE", "0.05", "Allowed difference between the order's taxTotal and the computed tax, CNY"),
    Setting("SANDAN_MATCH_TIMEOUT", "86400", "Seconds a declaration may wait for its four documents (INCOMPLETE after)"),
    Setting("SANDAN_SINGLE_LIMIT", "5000", "Single-transaction limit on the taxable value, CNY (inclusive)"),
    Setting("SANDAN_ANNUAL_LIMIT", "26000", "Annual limit per buyer on the taxable value, CNY (inclusive)"),
    Setting("SANDAN_PII_KEY", "sandan-dev-key-change-me", "Secret for keyed hashes of buyer ID numbers (set it in production)"),
    Setting("SANDAN_MATCH_RETENTION", "2592000", "Seconds a decided orderNo is remembered (DUPLICATE/LOCKED checks)"),
    Setting("SANDAN_TICK_SECONDS", "1", "How often order_match looks for expired declarations"),
    Setting("SANDAN_STORE", "rocksdb://", "faust table store: rocksdb:// (durable, large) or memory://"),
    Setting("SANDAN_ORDER_MATCH_METRICS_PORT", "9301", "Prometheus /metrics port of the order_match worker"),
    Setting("SANDAN_SESSION_TIMEOUT", "10", "Seconds before Kafka gives a silent worker's partitions to the others"),
    Setting("SANDAN_LOG_LEVEL", "INFO", "Log level of every service"),
]
_BY_ENV = {s.env: s for s in SETTINGS}


def get(env: str) -> str:
    """The current value of a declared setting."""
    return os.environ.get(env, _BY_ENV[env].default)


def get_int(env: str) -> int:
    raw = get(env)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"setting {env}={raw!r} is not a whole number") from None


def get_decimal(env: str) -> Decimal:
    raw = get(env)
    try:
        return Decimal(raw)
    except ArithmeticError:
        raise SystemExit(f"setting {env}={raw!r} is not a decimal number") from None


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default.replace(str(PROJECT_ROOT), "<repo>") if s.default else "(empty)"
        rows.append(f"| `{s.env}` | `{default}` | {s.doc} |")
    return "\n".join(rows)
