"""What a service's engine asks its adapter to publish: one record for one topic."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    topic: str      # short topic name (services.common.topics)
    key: bytes
    schema: str     # Avro record name
    record: dict
