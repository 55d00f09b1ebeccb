"""Raw Kafka on the same machine: Kafka's own ProducerPerformance and ConsumerPerformance.

Both run from the jars the local broker runs from (``.cache/kafka-jars/<version>``) on a
topic of the benchmark with the document topics' partition count. The producer sends the
benchmark's own document records (``--payload-file``; the tool reads that file as UTF-8 text,
so bytes that are not valid UTF-8 go out as U+FFFD and a record grows by a few bytes), with the
settings the benchmark's producer uses: acks=all, idempotence, linger 5 ms, 256 KiB batches.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from services.common import config, kafka_io, topics

DELIMITER = "~sandan-bench-record~"


def _java(main: str, *args: str, timeout: float) -> str:
    jars = config.PROJECT_ROOT / ".cache" / "kafka-jars" / config.get("SANDAN_KAFKA_VERSION")
    done = subprocess.run(["java", "-Xmx512m", "-cp", f"{jars}/*", main, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{main} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def payload_file(values: list[bytes], path: Path) -> float:
    """Write the records for ``--payload-file``; returns their mean size as the tool sends them."""
    texts = [v.decode("utf-8", errors="replace") for v in values]
    if any(DELIMITER in t for t in texts):
        raise ValueError("a record contains the payload delimiter")
    path.write_text(DELIMITER.join(texts), encoding="utf-8")
    return sum(len(t.encode("utf-8")) for t in texts) / len(texts)


def run(values: list[bytes], count: int, work_dir: Path) -> dict:
    """Produce ``count`` records (cycling through ``values``) to a fresh topic, then consume them."""
    spec = topics.TopicSpec("bench.raw", "none", "bytes", retention_ms=3600 * 1000)
    kafka_io.create_topics([spec])
    payloads = work_dir / "raw-payloads.txt"
    mean_bytes = payload_file(values, payloads)
    bootstrap = config.get("SANDAN_KAFKA_BOOTSTRAP")
    produced = _java("org.apache.kafka.tools.ProducerPerformance", "--topic", spec.full_name,
                     "--num-records", str(count), "--throughput", "-1", "--payload-file", str(payloads),
                     "--payload-delimiter", DELIMITER, "--producer-props", f"bootstrap.servers={bootstrap}",
                     "acks=all", "enable.idempotence=true", "linger.ms=5", "batch.size=262144",
                     timeout=900)
    last = [line for line in produced.splitlines() if "records sent" in line][-1]
    p_rate, p_mb = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\)", last).groups()
    consumed = _java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap,
                     "--topic", spec.full_name, "--messages", str(count), "--timeout", "30000",
                     "--group", f"{spec.full_name}-perf", timeout=900)
    header, values_line = [line for line in consumed.splitlines() if line.strip()][-2:]
    row = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in values_line.split(",")]))
    produce_rate, consume_rate = float(p_rate), float(row["fetch.nMsg.sec"])
    return {"records": count, "record_bytes": round(mean_bytes), "produce_records_per_s": round(produce_rate),
            "produce_mb_per_s": float(p_mb), "consume_records_per_s": round(consume_rate),
            "consume_mb_per_s": float(row["fetch.MB.sec"]),
            # one record's trip through Kafka, as sandan's documents make it: produced, then consumed
            "produce_consume_records_per_s": round(1 / (1 / produce_rate + 1 / consume_rate)),
            "topic": spec.full_name}
