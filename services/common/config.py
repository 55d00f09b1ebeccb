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
    Setting("SANDAN_KAFKA_CONNECT_TIMEOUT", "10", "Seconds a command waits for Kafka to answer before it gives up"),
    Setting("SANDAN_KAFKA_PORT", "19092", "Port of the local Kafka broker listener (`make up`)"),
    Setting("SANDAN_KAFKA_CONTROLLER_PORT", "19093", "Port of the local KRaft controller listener"),
    Setting("SANDAN_KAFKA_HEAP", "512m", "Heap (-Xmx/-Xms) of the local Kafka broker"),
    Setting("SANDAN_KAFKA_VERSION", "4.1.1", "Apache Kafka version the local stack fetches from Maven Central"),
    Setting("SANDAN_KAFKA_NODES", "1",
            "Kafka nodes `make up` starts: 1, or 3 (a KRaft quorum; node i of 0..2 on SANDAN_KAFKA_PORT + 10·i)"),
    Setting("SANDAN_KAFKA_CLUSTER_HEAP", "256m", "Heap (-Xmx/-Xms) of each local Kafka node when SANDAN_KAFKA_NODES=3"),
    Setting("SANDAN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
            "How every sandan Kafka client talks to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL"
            " (a login over TLS)"),
    Setting("SANDAN_KAFKA_SSL_CAFILE", "",
            "PEM CA(s) the brokers' certificates must chain to (SSL, SASL_SSL; empty: the system's CAs)"),
    Setting("SANDAN_KAFKA_SSL_CERTFILE", "",
            "PEM client certificate for mutual TLS (SSL, SASL_SSL; may hold its key too)"),
    Setting("SANDAN_KAFKA_SSL_KEYFILE", "", "PEM private key of SANDAN_KAFKA_SSL_CERTFILE (unencrypted)"),
    Setting("SANDAN_KAFKA_SASL_MECHANISM", "",
            "SASL login of SASL_PLAINTEXT/SASL_SSL: SCRAM-SHA-256, SCRAM-SHA-512, or PLAIN (SASL_SSL only)"),
    Setting("SANDAN_KAFKA_SASL_USERNAME", "", "SASL user name"),
    Setting("SANDAN_KAFKA_SASL_PASSWORD", "",
            "SASL password (prefer SANDAN_KAFKA_SASL_PASSWORD_FILE; never logged nor printed)"),
    Setting("SANDAN_KAFKA_SASL_PASSWORD_FILE", "",
            "File whose first line is the SASL password (instead of SANDAN_KAFKA_SASL_PASSWORD)"),
    Setting("SANDAN_KAFKA_SECURE_PORT", "0",
            "Local stack: port of a SASL_SSL (SCRAM-SHA-512, test CA) listener each Kafka node also opens"
            " (node i on it + 10·i); 0: none. `scripts/stack.sh env` prints the client settings for it"),
    Setting("SANDAN_REDIS_URL", "redis://127.0.0.1:16379/0", "Redis URL for quotas and guarantee balances"),
    Setting("SANDAN_REDIS_PORT", "16379", "Port of the local Redis server (`make up`)"),
    Setting("SANDAN_REDIS_SENTINELS", "",
            "Redis Sentinels (host:port,...): set, every client connects to the primary they name for"
            " SANDAN_REDIS_MASTER and follows it through a failover (db and password still from SANDAN_REDIS_URL);"
            " empty: SANDAN_REDIS_URL itself"),
    Setting("SANDAN_REDIS_MASTER", "sandan", "Name under which the Sentinels monitor sandan's Redis primary"),
    Setting("SANDAN_REDIS_WAIT_REPLICAS", "0",
            "Replicas that must hold a batch's Redis writes (WAIT) before a worker publishes what follows from them;"
            " fewer within SANDAN_REDIS_WAIT_TIMEOUT_MS: the batch is retried. 1 with Sentinel (README, Redis failover)"),
    Setting("SANDAN_REDIS_WAIT_TIMEOUT_MS", "1000", "How long one WAIT for SANDAN_REDIS_WAIT_REPLICAS replicas lasts"),
    Setting("SANDAN_LOCAL_DIR", str(PROJECT_ROOT / ".local"), "Data, logs and pid files of the local stack"),
    Setting("SANDAN_STACK_TIMEOUT", "60", "Seconds `make up` waits for Kafka, Redis and Prometheus to answer before giving up"),
    Setting("SANDAN_PROMETHEUS_PORT", "19090", "Port of the local Prometheus server (`make up`), 127.0.0.1 only"),
    Setting("SANDAN_SCHEMA_REGISTRY_PORT", "18081", "Port of the local schema registry (`make up`), 127.0.0.1 only"),
    Setting("SANDAN_SCHEMA_REGISTRY_HEAP", "192m", "Heap (-Xmx/-Xms) of the local schema registry"),
    Setting("SANDAN_METRICS_HOST", "127.0.0.1",
            "Address the services' /metrics endpoints listen on (0.0.0.0 in docker compose, for Prometheus)"),
    Setting("SANDAN_SCHEMA_REGISTRY_URL", "",
            "Confluent-compatible schema registry (e.g. http://127.0.0.1:18081/apis/ccompat/v7); set, records are written in the Confluent wire format"),
    Setting("SANDAN_AVRO_CODEC", "compiled",
            "What writes and reads the Avro bodies: compiled (Python compiled from each schema at start, services/common/avro_compiled.py) or fastavro (its schema interpreter); the bytes are the same either way"),
    Setting("SANDAN_WIRE_FORMAT", "auto",
            "Framing of written Kafka records: confluent (0x00 + registry schema id), sandan (0xA5 + schema tag), or auto (confluent when SANDAN_SCHEMA_REGISTRY_URL is set); both are always read"),
    Setting("SANDAN_TOPIC_PARTITIONS", "4", "Partitions of every document topic (all co-partitioned)"),
    Setting("SANDAN_TOPIC_REPLICATION", "1",
            "Replication factor of every topic sandan creates (3 on a three-node cluster)"),
    Setting("SANDAN_TOPIC_MIN_INSYNC", "1",
            "min.insync.replicas of every topic sandan creates: replicas an acks=all write needs (2 on three nodes)"),
    Setting("SANDAN_TOPIC_PREFIX", "", "Prefix for every topic name (isolates test runs and tenants)"),
    Setting("CEB_XSD_DIR", "", "Folder with the official CEB XSDs; when set, XML is also validated against them"),
    Setting("SANDAN_CEB_MAX_BYTES", "10485760", "Largest CEB XML message accepted, in bytes (larger input is refused unparsed)"),
    Setting("SANDAN_TAX_RATES", "", "CSV of HS prefix → VAT and consumption-tax rates (default: the shipped table)"),
    Setting("SANDAN_TAX_TOLERANCE", "0.05", "Allowed difference between the order's taxTotal and the computed tax, CNY"),
    Setting("SANDAN_MATCH_TIMEOUT", "86400", "Seconds a declaration may wait for its four documents (INCOMPLETE after)"),
    Setting("SANDAN_APP_TIME_SKEW", "300",
            "Seconds a document's appTime may be later than its arrival (Kafka append time; `sandan check`: the clock) before it is refused APP_TIME"),
    Setting("SANDAN_SINGLE_LIMIT", "5000", "Single-transaction limit on the taxable value, CNY (inclusive)"),
    Setting("SANDAN_ANNUAL_LIMIT", "26000", "Annual limit per buyer on the taxable value, CNY (inclusive)"),
    Setting("SANDAN_PII_KEY", "sandan-dev-key-change-me", "Secret for keyed hashes of buyer ID numbers (set it in production)"),
    Setting("SANDAN_MATCH_RETENTION", "2592000", "Seconds a decided orderNo is remembered (DUPLICATE/LOCKED checks)"),
    Setting("SANDAN_MATCH_REPLAY_WINDOW", "3600", "Seconds a verified declaration's documents are kept so a crash replay can re-emit its verdict"),
    Setting("SANDAN_FETCH_MAX_WAIT_MS", "100",
            "Longest a stream worker's fetch waits at the broker for new records"),
    Setting("SANDAN_GC_THRESHOLD", "50000",
            "Container objects a service may allocate beyond those it freed before Python's garbage collector runs"
            " (Python's own: 700, under which order_match stood still 80-190 ms every ~5 s at load)"),
    Setting("SANDAN_MATCH_IDLE_SECONDS", "5",
            "Seconds a document topic partition may have nothing to read before order_match takes it as caught up"
            " (expiry follows the documents' arrival times while the worker reads a backlog)"),
    Setting("SANDAN_TICK_SECONDS", "1", "How often order_match looks for expired declarations"),
    Setting("SANDAN_STORE", "rocksdb://", "Workers' table store: rocksdb:// (durable, large) or memory:// (rebuilt from the changelog at each start)"),
    Setting("SANDAN_ORDER_MATCH_METRICS_PORT", "9301", "Prometheus /metrics port of the order_match worker"),
    Setting("SANDAN_WORKER_KAFKA_WAIT", "300",
            "Seconds a starting worker waits for Kafka to answer (retrying) before it exits 70 to be started again"),
    Setting("SANDAN_WORKER_INDEX", "0", "Number of this worker process on its host (0, 1, ...): part of its static group identity"),
    Setting("SANDAN_WORKER_ID", "", "Static consumer-group identity of this worker (default: host-app-index); keep it across restarts"),
    Setting("SANDAN_SESSION_TIMEOUT", "10", "Seconds before Kafka gives a silent worker's partitions to the others"),
    Setting("SANDAN_KAFKA_LINGER_MS", "5", "Milliseconds a worker's producer waits to fill a batch (fewer, larger requests)"),
    Setting("SANDAN_KAFKA_PUBLISH_TIMEOUT", "60",
            "Seconds the gateway waits for Kafka to acknowledge a call's records before answering UNAVAILABLE (paydata waits SANDAN_PAYDATA_HTTP_TIMEOUT)"),
    Setting("SANDAN_KAFKA_DELIVERY_TIMEOUT", "120",
            "Seconds a stream worker waits for Kafka to take an output (a partition without a leader while a"
            " broker restarts) before it exits 70 and is started again from its last commit (at most 600)"),
    Setting("SANDAN_KAFKA_BATCH_BYTES", "262144", "Largest batch a worker's producer sends to one partition, in bytes"),
    Setting("SANDAN_ROCKSDB_MEMORY_MB", "64",
            "Memory of a worker's table stores (one RocksDB per input partition, sharing this budget): half block"
            " cache, half write buffers (bounds a worker's RSS)"),
    Setting("SANDAN_STORE_REVOKED_GRACE_SECONDS", "600",
            "Seconds a worker keeps the store of a partition taken away from it: back within them it is reused"
            " (checked against the changelog), later it is rebuilt; then the store is deleted"),
    Setting("SANDAN_PROCESSING_GUARANTEE", "exactly_once",
            "exactly_once: a stream worker's outputs, table changes and input offsets go to Kafka in one transaction"
            " (`SANDAN_TRANSACTION_SCOPE`; a worker that lost its partitions is fenced); at_least_once: flushed,"
            " then committed"),
    Setting("SANDAN_TRANSACTION_SCOPE", "worker",
            "exactly_once: worker, one transaction per worker and commit, its offsets checked against the group's"
            " generation (a worker the group moved on from, e.g. cut off past its session, aborts, drops its"
            " uncommitted work and rejoins; one lost for good holds its partitions' readers up to the transaction"
            " timeout); partition, one per input partition and commit, fenced by the partition's next owner's"
            " producer (more transactions: falls behind with many partitions per worker); change it with all of"
            " a service's workers stopped"),
    Setting("SANDAN_COMMIT_INTERVAL_MS", "200",
            "Milliseconds between a stream worker's commits (with exactly_once, how long its outputs wait unseen)"),
    Setting("SANDAN_STREAM_BATCH", "500",
            "Most records a stream worker takes from Kafka at once and handles together"),
    Setting("SANDAN_STREAM_BATCH_WAIT_MS", "100",
            "Milliseconds a worker waits to fill a batch before it works on what it has"),
    Setting("SANDAN_STREAM_ALIGN_MS", "100",
            "How far (record time, ms) one co-partitioned input of a worker may run ahead of another that is catching up before it waits for it; 0: never waits"),
    Setting("SANDAN_GUARANTEE_THRESHOLDS", "80,95",
            "Utilisation percentages of a tax guarantee that warn when crossed upwards (comma-separated)"),
    Setting("SANDAN_GUARANTEE_EXPIRY_WARN_DAYS", "30", "Warn (once a day) when a tax guarantee's validity ends within this many days"),
    Setting("SANDAN_GUARANTEE_CHECK_SECONDS", "3600",
            "How often the tax_guarantee worker looks for guarantees about to expire and refreshes its gauges"),
    Setting("SANDAN_TAX_GUARANTEE_METRICS_PORT", "9302", "Prometheus /metrics port of the tax_guarantee worker"),
    Setting("SANDAN_GATEWAY_LISTEN", "127.0.0.1:50051",
            "host:port the gateway listens on (off loopback only with TLS)"),
    Setting("SANDAN_GATEWAY_CLIENTS", "",
            "JSON file of the gateway's clients (id, role, codes, token hash; re-read when it changes); "
            "empty: `$SANDAN_LOCAL_DIR/gateway/clients.json`"),
    Setting("SANDAN_GATEWAY_TLS_CERT", "", "PEM certificate (chain) of the gateway; with the key it turns TLS on"),
    Setting("SANDAN_GATEWAY_TLS_KEY", "", "PEM private key of the gateway's certificate"),
    Setting("SANDAN_GATEWAY_TLS_CLIENT_CA", "",
            "PEM CA of client certificates; when set, clients need a certificate naming their client id (mTLS)"),
    Setting("SANDAN_GATEWAY_MAX_MESSAGE_BYTES", "16777216", "Largest gRPC message the gateway takes, in bytes"),
    Setting("SANDAN_GATEWAY_RATE", "200", "Calls plus submitted items per second allowed to each client (token bucket)"),
    Setting("SANDAN_GATEWAY_BURST", "400", "Token bucket size: how far a client may exceed the rate for a moment"),
    Setting("SANDAN_GATEWAY_STREAM_BATCH", "64", "Records a server stream takes from Kafka at a time (bounds its buffer)"),
    Setting("SANDAN_GATEWAY_FETCH_BYTES", "1048576", "Most bytes a server stream's Kafka consumer fetches ahead"),
    Setting("SANDAN_GATEWAY_GRACE", "10", "Seconds in-flight calls get to finish when the gateway stops"),
    Setting("SANDAN_GATEWAY_METRICS_PORT", "9304", "Prometheus /metrics port of the gateway"),
    Setting("SANDAN_GATEWAY_SHARE_PORT", "0",
            "1: several gateways may listen on one port on purpose (SO_REUSEPORT); 0: a port in use stops the start"),
    Setting("SANDAN_GATEWAY_AUTH_RECHECK_SECONDS", "2",
            "How often open streams' credentials are checked again; revoked or changed ones end with UNAUTHENTICATED"),
    Setting("SANDAN_GATEWAY_MAX_STREAMS_PER_CLIENT", "16",
            "Open Receipts/Subscribe/SubscribeBatches streams one client may hold (more: RESOURCE_EXHAUSTED)"),
    Setting("SANDAN_GATEWAY_REPORT_SKEW_SECONDS", "300",
            "How far in the future a reported decision time may be (clock skew) before the report is refused"),
    Setting("SANDAN_GATEWAY_DEADLETTER_POLL_SECONDS", "15",
            "How often the gateway reads the deadletter topic's size for sandan_deadletter_topic_records"),
    Setting("SANDAN_GATEWAY_REPORT_WINDOW_DAYS", "30",
            "Days a delivered declaration stays reportable (the gateway's index of deliveries expires after it)"),
    Setting("SANDAN_REQUIRE_SIGNATURE", "default",
            "CEB message types the gateway accepts only with a ds:Signature that verifies against a certificate"
            " registered for the sender (`sandan certs`): default (CEB621,CEB623,CEB625,CEB711), all, none, or a"
            " comma list; a signature on any other type is verified too"),
    Setting("SANDAN_SIGNING_KEY", "",
            "PEM private key (SM2 or RSA, unencrypted) sandan signs the envelopes (dxp:DxpMsg) of its XML receipts"
            " with; empty: an SM2 key generated once into $SANDAN_LOCAL_DIR/signing/ and reused"),
    Setting("SANDAN_SIGNING_CERT", "",
            "PEM certificate of SANDAN_SIGNING_KEY, the one enterprises verify receipts with (`sandan certs"
            " show-own` prints it); empty: the self-signed one generated with the key"),
    Setting("SANDAN_DXP_NODE_ID", "DXPSANDAN0000001",
            "sandan's node id on the data exchange: the SenderId of its receipt envelopes (1-16 characters)"),
    Setting("SANDAN_GATEWAY_ADDRESS", "127.0.0.1:50051", "Client side: gateway address for `sandan gateway` commands"),
    Setting("SANDAN_GATEWAY_TOKEN", "", "Client side: bearer token (prefer SANDAN_GATEWAY_CREDENTIALS)"),
    Setting("SANDAN_GATEWAY_CREDENTIALS", "",
            "Client side: JSON file with address, token and TLS files (written by `sandan gateway add-client`)"),
    Setting("SANDAN_GATEWAY_CA", "", "Client side: PEM CA that signed the gateway's certificate (turns TLS on)"),
    Setting("SANDAN_GATEWAY_CLIENT_CERT", "", "Client side: PEM client certificate for mTLS"),
    Setting("SANDAN_GATEWAY_CLIENT_KEY", "", "Client side: PEM private key of the client certificate"),
    Setting("SANDAN_RETURN_APPLY_DAYS", "30",
            "Last day after release (China calendar days, release day = 0) a return may be applied for"),
    Setting("SANDAN_RETURN_ARRIVAL_DAYS", "45",
            "Last day after release returned goods may arrive; waiting requests expire when it ends"),
    Setting("SANDAN_RETURNS_HOLD", "3600",
            "Seconds a cancellation, return, report or parcel waits for a declaration the returns service does not know yet"),
    Setting("SANDAN_RETURNS_RETENTION", "2592000",
            "Seconds the returns service remembers a declaration after no return can happen any more"),
    Setting("SANDAN_RETURNS_TICK_SECONDS", "10", "How often the returns worker looks for expired requests and parcels"),
    Setting("SANDAN_RETURNS_METRICS_PORT", "9303", "Prometheus /metrics port of the returns worker"),
    Setting("SANDAN_PAYDATA_SAMPLE", "0.01",
            "Share of verified declarations customs asks the platform's payment data for (0 to 1; a keyed hash of the declaration picks the same ones on every run)"),
    Setting("SANDAN_PAYDATA_DEADLINE", "120",
            "Seconds a platform has from customs' platDataOpen request to upload the payment data (PAYDATA_MISSING after; an upload later is PAYDATA_LATE)"),
    Setting("SANDAN_PAYDATA_LISTEN", "127.0.0.1:9310", "host:port of customs' realTimeDataUpload HTTP endpoint (the paydata service)"),
    Setting("SANDAN_PAYDATA_HTTP_TIMEOUT", "10",
            "Seconds any payment-data HTTP request may take, either side (platDataOpen calls, uploads, reading a request body)"),
    Setting("SANDAN_PAYDATA_MAX_BODY", "262144", "Largest payment-data HTTP request body accepted, in bytes, either side"),
    Setting("SANDAN_PAYDATA_RETENTION", "2592000",
            "Seconds the paydata service keeps a declaration's payment facts and a session (an upload after it is an unknown session)"),
    Setting("SANDAN_PAYDATA_TICK_SECONDS", "1", "How often the paydata service looks for sessions past their deadline"),
    Setting("SANDAN_PAYDATA_METRICS_PORT", "9305", "Prometheus /metrics port of the paydata service"),
    Setting("SANDAN_PLATFORM_PAYDATA_LISTEN", "127.0.0.1:9320",
            "Platform side: host:port `sandan platform serve-paydata` answers platDataOpen on"),
    Setting("SANDAN_PLATFORM_UPLOAD_URL", "http://127.0.0.1:9310/realTimeDataUpload",
            "Platform side: customs' realTimeDataUpload URL the responder uploads to"),
    Setting("SANDAN_PLATFORM_UPLOAD_ATTEMPTS", "5",
            "Platform side: most times the responder tries one upload (backoff doubling from 0.5 s, all within the deadline)"),
    Setting("SANDAN_PLATFORM_LOOKUP_SECONDS", "60",
            "Platform side: how long the responder keeps looking for an order's payment data that is not in its file yet"),
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
    """A decimal setting: the tolerance and limits are amounts, so plain, finite and not negative."""
    raw = get(env)
    try:
        value = Decimal(raw.strip())
    except ArithmeticError:
        raise SystemExit(f"setting {env}={raw!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise SystemExit(f"setting {env}={raw!r} must be a finite amount, not negative")
    return value


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default.replace(str(PROJECT_ROOT), "<repo>") if s.default else "(empty)"
        rows.append(f"| `{s.env}` | `{default}` | {s.doc} |")
    return "\n".join(rows)
