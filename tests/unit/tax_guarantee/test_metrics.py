"""Metrics follow the records published (amount counters in whole fen)."""
from __future__ import annotations

import asyncio
from decimal import Decimal

from prometheus_client import REGISTRY

from services.common.quota.store import MemoryQuotaStore
from services.tax_guarantee import metrics
from services.tax_guarantee.processor import GuaranteeProcessor
from services.tax_guarantee.store import MemoryAccountStore

from .samples import CODE, NOW_MS, command_record, verdict


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_deductions_refusals_and_balances_are_counted():
    engine = GuaranteeProcessor(store=MemoryAccountStore(), quota=MemoryQuotaStore(), thresholds=(Decimal(80),),
                                expiry_warn_days=30)
    m = metrics.guarantee()
    before = (sample("sandan_guarantee_deductions_total"), sample("sandan_guarantee_deducted_fen_total"),
              sample("sandan_guarantee_refusals_total", reason="GUARANTEE_INSUFFICIENT"),
              sample("sandan_guarantee_warnings_total", kind="utilisation"))
    outputs = []
    for step, record in ((engine.on_command, command_record("register", kind="bank_guarantee", amount=Decimal(100),
                                                                validFrom="20250101", validTo="20251231")),
                         (engine.on_verdict, verdict("1", tax="80.25")), (engine.on_verdict, verdict("2", tax="50"))):
        outputs += asyncio.run(step(record, NOW_MS)).outputs
    for output in outputs:
        metrics.count_output(m, output)
    after = (sample("sandan_guarantee_deductions_total"), sample("sandan_guarantee_deducted_fen_total"),
             sample("sandan_guarantee_refusals_total", reason="GUARANTEE_INSUFFICIENT"),
             sample("sandan_guarantee_warnings_total", kind="utilisation"))
    assert [a - b for a, b in zip(after, before)] == [1, 8025, 1, 1]
    assert sample("sandan_guarantee_available_cny", assure_code=CODE) == 19.75
    assert sample("sandan_guarantee_utilisation_percent", assure_code=CODE) == 80.25
