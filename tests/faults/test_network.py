"""The network between one worker and the broker (issue 20), on loopback only: cut for 30 s
under load, then healed; and 200 ms added to everything it sends the broker for a whole run.

The worker runs in a cgroup of its own, which the firewall rules name (``netfault.py``), so no
other process on the machine is touched. Every rule and cgroup goes in a ``finally``, and
conftest.py removes any a crashed run left.
"""
from __future__ import annotations

import asyncio
import threading

from tests.faults import netfault, scenario
from tests.faults.pipeline import Plan

CUT_S = 30
DELAY_S = 0.2


def _in_group(proc, group: netfault.ProcessGroup) -> None:
    """Every start of ``proc`` (the supervisor's restarts too) puts it in ``group`` before it opens a socket."""
    start = proc.start

    def start_in_group():
        started = start()
        group.add(proc.proc.pid)
        return started

    proc.start = start_in_group


def test_a_worker_cut_off_from_the_broker_for_30s_loses_and_duplicates_nothing(private, topic_prefix, rnd):
    broker_port = int(private.env["SANDAN_KAFKA_PORT"])
    group = netfault.ProcessGroup("cut")

    async def inject(p):
        await asyncio.sleep(rnd.uniform(3.0, 6.0))
        p.faults.record(f"order_match cut off from the broker for {CUT_S} s")
        with netfault.partition(group, broker_port):
            await asyncio.sleep(CUT_S)
        p.faults.record("healed")

    plan = Plan(load_s=20.0, **scenario.LONG_OUTAGE)
    pipeline = scenario.pipeline("net-cut", private, topic_prefix, plan)
    _in_group(pipeline.services.procs["order-match"], group)
    try:
        findings = scenario.run(f"network: order_match cut off from the broker {CUT_S} s", pipeline, inject)
    finally:
        group.remove()
    assert not findings, findings.text()


def test_200ms_added_toward_the_broker_loses_and_duplicates_nothing(private, topic_prefix):
    broker_port = int(private.env["SANDAN_KAFKA_PORT"])
    group = netfault.ProcessGroup("slow")
    proxy = netfault.DelayProxy(broker_port, DELAY_S)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)

    async def inject(p):
        p.faults.record(f"order_match: {DELAY_S * 1000:.0f} ms toward the broker, the whole run")
        await asyncio.sleep(1)

    pipeline = scenario.pipeline("net-slow", private, topic_prefix, Plan(**scenario.LONG_OUTAGE))
    _in_group(pipeline.services.procs["order-match"], group)
    try:
        with netfault.redirect(group, broker_port, proxy.port):
            findings = scenario.run(f"network: order_match +{DELAY_S * 1000:.0f} ms toward the broker", pipeline,
                                    inject)
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        group.remove()
    assert proxy.connections > 0, "the worker's connections did not go through the delay"
    assert not findings, findings.text()
