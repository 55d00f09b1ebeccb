"""Running one fault scenario: the pipeline under load, the faults, the audit, the table row."""
from __future__ import annotations

import asyncio

from tests.faults.audit import Findings, audit, in_flight
from tests.faults.pipeline import Pipeline, Plan
from tests.faults.table import TABLE, Row

# Both stores are also checked the way an operator would: the rebuild commands must find
# Redis equal to what Kafka says.
REBUILDS = (("guarantee", "rebuild"), ("quota", "rebuild"))


def run(name: str, pipeline: Pipeline, inject) -> Findings:
    evidence = asyncio.run(pipeline.run(inject))
    findings = audit(evidence)
    for args in REBUILDS:
        code, out = pipeline.sandan(*args)
        if code != 0:
            findings.mismatched.append(f"`sandan {' '.join(args)}` exit {code}: {out.strip()[-800:]}")
    TABLE.notes.append(f"{name}: {evidence.summary()}")
    TABLE.add(Row(name, faults=len(evidence.faults), in_flight=in_flight(evidence), lost=len(findings.lost),
                  duplicated=len(findings.duplicated), mismatched=len(findings.mismatched),
                  crashes=len(findings.crashes), seconds=round(evidence.seconds, 1)))
    assert evidence.submitted, "the load never got through the gateway"
    assert evidence.faults, "the scenario injected no fault"
    return findings


# Declarations must not time out while a service is away: order_match counts the match timeout
# from when it takes a document, so an outage longer than the timeout would rightly turn
# complete declarations incomplete. Scenarios with long outages use this plan (no
# declaration is meant to stay incomplete, so none waits for the timeout either).
LONG_OUTAGE = dict(match_timeout_s=300, incomplete=False)


def pipeline(slug: str, private, topic_prefix: str, plan: Plan | None = None, **env: str) -> Pipeline:
    """A pipeline with its own topics and keys (``<session prefix><slug>-``) on the private stack."""
    return Pipeline(slug, topic_prefix, private.runs_dir(), plan or Plan(), **env)
