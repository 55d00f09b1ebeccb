"""Reading the services' own Prometheus endpoints, as an operator's dashboard would."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[str, list]:
    """metric family name → [(labels, value)] from http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    families: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            families.setdefault(sample.name, []).append((sample.labels, sample.value))
    return families


def total(families: dict, name: str, **labels) -> int:
    """Sum of a counter's samples whose labels include ``labels`` (counts are whole numbers)."""
    return int(sum(Decimal(repr(v)) for lab, v in families.get(name, ()) if labels.items() <= lab.items()))


def histogram_quantile(families: dict, name: str, q: Decimal) -> str:
    """The upper bound of the bucket holding quantile ``q``, as Prometheus' histogram_quantile
    would bound it (``"≤ 0.5 s"``)."""
    buckets = sorted(((Decimal("Infinity") if lab["le"] == "+Inf" else Decimal(lab["le"]), Decimal(repr(v)))
                      for lab, v in families.get(f"{name}_bucket", ())), key=lambda b: b[0])
    if not buckets or buckets[-1][1] == 0:
        return "n/a"
    wanted = buckets[-1][1] * q
    for bound, count in buckets:
        if count >= wanted:
            return f"<= {bound} s"
    return "n/a"


def prometheus_total(query: str, port: int) -> Decimal | None:
    """The value of a scalar PromQL query on the local Prometheus, or None when it is not there."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            data = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    result = data.get("data", {}).get("result") or []
    return Decimal(result[0]["value"][1]) if result else None
