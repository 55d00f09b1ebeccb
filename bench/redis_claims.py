"""`python -m bench.redis_claims`: the Redis client's CPU per waybill claim, as order_match makes them.

order_match claims waybill numbers in batches (``RedisWaybillRegistry.claim_many``, one
pipeline per batch of decisions). This measures the worker's own CPU per claim (the process's
CPU time, Redis's not included) for the claim as one command (``SET key orderNo NX GET PXAT``,
what the registry sends) and as the two commands it replaced (``SET NX PXAT`` then ``GET``),
each with redis-py's Python parser and with hiredis. Rounds alternate between the variants;
the medians are printed as one JSON object. Needs the Redis of ``SANDAN_REDIS_URL`` (``make up``);
its keys live under ``sandan:bench-claims-<run>:`` and are deleted at the end.

    python -m bench.redis_claims [--batch 250] [--batches 60] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

from bench import machine
from services.common import config
from services.common.clock import months_after_ms, now_ms
from services.order_match.waybills import HELD_MONTHS, RedisWaybillRegistry
from services.tools import runs


class TwoCommandRegistry(RedisWaybillRegistry):
    """The claim as it was before: SET NX, then a GET for who holds the number."""

    async def claim_many(self, claims):
        pipe = self._redis.pipeline(transaction=False)
        for code, number, order_no, _, at_ms in claims:
            key = f"{self._ns}waybill:{code}:{number}"
            pipe.set(key, order_no, nx=True, pxat=months_after_ms(now_ms() if at_ms is None else at_ms, HELD_MONTHS))
            pipe.get(key)
        answers = await pipe.execute()
        holders = []
        for (_, _, order_no, _, _), claimed, holder in zip(claims, answers[::2], answers[1::2]):
            holder = holder.decode() if isinstance(holder, bytes) else holder
            holders.append(None if claimed or holder in (None, order_no) else holder)
        return holders


VARIANTS = {"two_commands_python_parser": (TwoCommandRegistry, _AsyncRESP2Parser),
            "two_commands_hiredis": (TwoCommandRegistry, _AsyncHiredisParser),
            "one_command_python_parser": (RedisWaybillRegistry, _AsyncRESP2Parser),
            "one_command_hiredis": (RedisWaybillRegistry, _AsyncHiredisParser)}


async def one_round(url: str, registry_class, parser, namespace: str, batch: int, batches: int) -> float:
    """CPU microseconds per claim: every batch claimed, then claimed again (a redelivery)."""
    pool = aioredis.ConnectionPool.from_url(url, parser_class=parser)
    client = aioredis.Redis(connection_pool=pool)
    registry = registry_class(client, namespace)
    try:
        await client.ping()
        started = time.process_time()
        for b in range(batches):
            claims = [("CARRIER", f"W{b}-{i}", f"ORDER{i:010d}", "", None) for i in range(batch)]
            first = await registry.claim_many(claims)
            again = await registry.claim_many(claims)
            if any(first) or any(again):  # every number is new and claimed by its own order
                raise SystemExit("bench.redis_claims: a fresh number answered as held by another order")
        return (time.process_time() - started) / (2 * batch * batches) * 1e6
    finally:
        await client.aclose()


async def run(args) -> dict:
    url = config.get("SANDAN_REDIS_URL")
    run_id = time.strftime("%Y%m%d%H%M%S")
    prefix = f"bench-claims-{run_id}:"  # under sandan:, as runs.delete_redis_keys expects
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for r in range(args.rounds):
            for name, (registry_class, parser) in VARIANTS.items():
                cpu[name].append(await one_round(url, registry_class, parser, f"sandan:{prefix}{name}:{r}:",
                                                 args.batch, args.batches))
    finally:
        runs.delete_redis_keys(prefix)
    medians = {name: round(statistics.median(values), 2) for name, values in cpu.items()}
    return {"machine": machine.describe(),
            "load_average_at_start": round(os.getloadavg()[0], 2), "batch": args.batch,
            "claims_per_round": 2 * args.batch * args.batches, "rounds": args.rounds,
            "cpu_us_per_claim": medians,
            "one_command_hiredis_over_two_commands_python_parser":
                round(medians["one_command_hiredis"] / medians["two_commands_python_parser"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=250, help="claims per pipeline (default 250)")
    parser.add_argument("--batches", type=int, default=60, help="pipelines per round (default 60)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant, alternated (default 5)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
