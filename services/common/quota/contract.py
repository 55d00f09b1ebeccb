"""What the quota component publishes: a release of quota outside the match, as a record on the
public ``quota.releases`` topic, so a rebuild needs no service's private state."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.common.outputs import Output

TOPIC = "quota.releases"
SCHEMA = "sandan.QuotaRelease"


@dataclass(frozen=True)
class QuotaRelease:
    declaration_id: str
    buyer_key: str
    year: int
    part: str | None = None        # None: the whole reservation (a cancellation)
    amount: Decimal | None = None

    def output(self, now_ms: int) -> Output:
        """The public record of this release (the same content for a redelivered input, bar the time)."""
        return Output(TOPIC, self.declaration_id.encode(), SCHEMA,
                      {"declarationId": self.declaration_id, "buyerKey": self.buyer_key, "quotaYear": self.year,
                       "part": self.part, "amount": self.amount, "releasedAt": now_ms})
