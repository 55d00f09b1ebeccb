"""Running one fault scenario: the pipeline under load, the faults, the audit, the table row.

Crash and outage scenarios run at load (``at_load``): ``LOAD_DECLARATIONS`` declarations
offered at half the rate the machine sustains through the same pipeline, measured once per
session by a full-speed burst of ``BURST_S`` seconds (``offered_rate``) before the first
scenario at load.
"""
from __future__ import annotations

import asyncio
import os
import re
from fractions import Fraction

import pytest

from tests.faults.audit import Findings, audit, in_flight, p99_through_faults, sustained_rate
from tests.faults.pipeline import Pipeline, Plan
from tests.faults.table import TABLE, Row

# Both stores are also checked the way an operator would: the rebuild commands must find
# Redis equal to what Kafka says.
REBUILDS = (("guarantee", "rebuild"), ("quota", "rebuild"))

LOAD_DECLARATIONS = int(os.environ.get("SANDAN_FAULT_DECLARATIONS") or 20_000)
BURST_S = 12.0
OFFERED_SHARE = Fraction(1, 2)   # of the sustained rate
_RATE: list[float] = []          # the session's offered rate, once measured


def run(name: str, pipeline: Pipeline, inject, repair: bool = False) -> Findings:
    """The pipeline under ``inject``, then the audit and the rebuilds, which must find Redis equal
    to Kafka. ``repair``: for a fault that may rightly lose Redis writes (a failover to an
    asynchronous replica), Redis is first repaired from Kafka, as the drill says, with the
    workers stopped; the notes say what was repaired, and the audit reads Redis after it."""
    evidence = asyncio.run(pipeline.run(inject))
    if repair:
        TABLE.notes.append(f"{name}: {repaired(pipeline)}")
        evidence.accounts, evidence.quotas = asyncio.run(pipeline.redis_state())
    findings = audit(evidence)
    for args in REBUILDS:
        code, out = pipeline.sandan(*args)
        if code != 0:
            findings.mismatched.append(f"`sandan {' '.join(args)}` exit {code}: {out.strip()[-800:]}")
    TABLE.notes.append(f"{name}: {evidence.summary()}")
    TABLE.add(Row(name, faults=len(evidence.faults), in_flight=in_flight(evidence), lost=len(findings.lost),
                  duplicated=len(findings.duplicated), mismatched=len(findings.mismatched),
                  crashes=len(findings.crashes), seconds=round(evidence.seconds, 1), offered=evidence.offered,
                  declarations=len(evidence.submitted), p99_ms=p99_through_faults(evidence),
                  not_acted_on=len(findings.not_acted_on)))
    assert evidence.submitted, "the load never got through the gateway"
    assert evidence.faults, "the scenario injected no fault"
    return findings


def repaired(pipeline: Pipeline) -> str:
    """Each rebuild once; where it finds differences (exit 1), the same with ``--repair``. Says how
    many differences each found and what was repaired; a rebuild that fails otherwise is left to
    ``run``'s clean rebuilds to report."""
    said = []
    for args in REBUILDS:
        code, out = pipeline.sandan(*args)
        if code != 1:
            said.append(f"`sandan {' '.join(args)}` {'found no difference' if code == 0 else f'exited {code}'}")
            continue
        found = re.search(r"^(\d+) differences", out, re.M)
        code, out = pipeline.sandan(*args, "--repair")
        fixed = re.findall(r"^repaired .*$", out, re.M) or [f"not repaired (exit {code}): {out.strip()[-300:]}"]
        corrections = len(re.findall(r"^appended \S+/correct/", out, re.M))
        said.append(f"`sandan {' '.join(args)}` found {found.group(1) if found else '?'} differences, --repair "
                    f"{'; '.join(fixed)}" + (f" ({corrections} correcting ledger entries)" if corrections else ""))
    return "; ".join(said)


# Declarations must not time out while a service is away: order_match counts the match timeout
# from when it takes a document, so an outage longer than the timeout would rightly turn
# complete declarations incomplete. Scenarios with long outages use this plan (no
# declaration is meant to stay incomplete, so none waits for the timeout either).
LONG_OUTAGE = dict(match_timeout_s=300, incomplete=False)


def pipeline(slug: str, private, topic_prefix: str, plan: Plan | None = None, **env: str) -> Pipeline:
    """A pipeline with its own topics and keys (``<session prefix><slug>-``) on the private stack."""
    return Pipeline(slug, topic_prefix, private.runs_dir(), plan or Plan(), **env)


# Scenarios whose run at load is in the long tier only (CI's hour cannot hold every scenario at
# 20,000 declarations): CI runs them with the small paced load, `make test-faults-long` at load.
SIZES = [pytest.param("small"), pytest.param("at-load", marks=pytest.mark.long)]


def sized(size: str, private, topic_prefix: str, **plan) -> Plan:
    """The plan of a scenario run in both tiers (``SIZES``): at load, or the small paced load."""
    return at_load(private, topic_prefix, **plan) if size == "at-load" else Plan(**plan)


def at_load(private, topic_prefix: str, **plan) -> Plan:
    """A plan of ``LOAD_DECLARATIONS`` declarations at the session's offered rate (``plan`` overrides)."""
    return Plan(**{"count": LOAD_DECLARATIONS, "rate": offered_rate(private, topic_prefix), **plan})


def offered_rate(private, topic_prefix: str) -> float:
    """Half of what the pipeline sustains on this machine, measured by the session's first call:
    ``SANDAN_FAULT_RATE`` (declarations/s) skips the measurement and offers that instead."""
    if not _RATE:
        fixed = os.environ.get("SANDAN_FAULT_RATE")
        if fixed:
            _RATE.append(float(fixed))
            TABLE.rate = f"offered rate {fixed} declarations/s, set by SANDAN_FAULT_RATE (not measured)"
        else:
            burst = Plan(count=LOAD_DECLARATIONS, burst_s=BURST_S, after_sales=0)
            evidence = asyncio.run(pipeline("capacity", private, topic_prefix, burst).run(_no_fault))
            sustained = sustained_rate(evidence)
            assert sustained > 0, "the full-speed burst got no declaration through the pipeline"
            _RATE.append(round(float(sustained * OFFERED_SHARE), 1))
            TABLE.rate = (f"sustained {float(sustained):.0f} declarations/s (measured once: a {BURST_S:.0f} s"
                          f" full-speed burst through the same pipeline, {len(evidence.complete)} declarations"
                          f" from first in to last out), offered {_RATE[0]:.0f}/s to every scenario at load")
            (private.runs_dir() / "rate.txt").write_text(TABLE.rate + "\n")  # before any scenario ends
    return _RATE[0]


async def _no_fault(_pipeline) -> None:
    return None


def moment(plan: Plan, rnd, low: float, high: float) -> float:
    """A random moment between ``low`` and ``high`` (shares of the load's duration), in seconds."""
    return rnd.uniform(low, high) * plan.duration_s
