"""`sandan quota rebuild [--repair]`: the buyers' annual quotas in Redis against Kafka.

Replays the public topics declarations.verdicts, declarations.refused and quota.releases
(services/common/quota/rebuild.py), prints every difference and, with ``--repair``, writes the rebuilt hashes. Run the repair with the workers stopped, as for
``sandan guarantee rebuild --repair``: after a Redis wipe, repair the guarantees and the
quotas, then start the workers again.

Exit status: 0 Redis equals the rebuild, 1 differences (repaired or not), 2 Kafka or Redis
unreachable.
"""
from __future__ import annotations

import asyncio
import sys

EQUAL, DIFFERENT, UNREACHABLE = 0, 1, 2


def add_parser(sub) -> None:
    p = sub.add_parser("quota", help="buyers' annual quotas: rebuild them from Kafka")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    rebuild = actions.add_parser("rebuild", help="replay verdicts, refusals and returns; compare Redis with them")
    rebuild.add_argument("--repair", action="store_true", help="write the rebuilt quotas (stop the workers first)")
    rebuild.add_argument("--timeout", type=float, default=60.0, help="seconds to read each topic (default 60)")
    rebuild.set_defaults(run=run_rebuild)


def run_rebuild(args) -> int:
    from redis.exceptions import RedisError

    from services.common import kafka_io, redis_client
    from services.common.quota import sources as quota_sources

    try:
        sources = quota_sources.read_sources(args.timeout)
    except kafka_io.KafkaError as exc:
        print(f"sandan quota: Kafka at {kafka_io.bootstrap()} did not answer: {exc}", file=sys.stderr)
        return UNREACHABLE
    try:
        return asyncio.run(_rebuild(sources, args.repair))
    except (RedisError, OSError) as exc:
        print(f"sandan quota: Redis ({redis_client.describe()}) did not answer: {exc}", file=sys.stderr)
        return UNREACHABLE


async def _rebuild(sources, repair: bool) -> int:
    from services.common import config, redis_client
    from services.cli.guarantee import print_table
    from services.common.quota import rebuild as quota_rebuild
    from services.common.quota import sources as quota_sources

    rebuilt = quota_rebuild.rebuild(sources.verified, sources.refused, sources.releases)
    client = redis_client.connect()
    try:
        hashes = quota_sources.RedisQuotaHashes(client, f"sandan:{config.get('SANDAN_TOPIC_PREFIX')}")
        differences = quota_rebuild.compare(rebuilt, await hashes.read_all())
        print(f"{sources.records} records: {len(sources.verified)} verdicts, {len(sources.refused)} refusals,"
              f" {len(sources.releases)} quota releases; {len(rebuilt.quotas)} buyer-year quotas")
        for problem in rebuilt.problems + quota_rebuild.beyond_limit(rebuilt, config.get_decimal("SANDAN_ANNUAL_LIMIT")):
            print(f"warning: {problem}")
        for topic in sources.truncated:
            print(f"warning: {topic} has lost its oldest records to retention; quotas they reserved are missing"
                  " from the rebuild")
        if not differences:
            print("Redis equals the rebuild")
            return EQUAL
        print_table(("buyerKey", "year", "what", "redis", "rebuilt"),
                    [[d.buyer_key, str(d.year), d.subject, d.redis, d.rebuilt] for d in differences])
        if not repair:
            print(f"{len(differences)} differences; run with --repair to write the rebuilt quotas")
        elif sources.truncated:
            print("not repaired: the rebuild is incomplete (see the warnings); fix the quotas by hand", file=sys.stderr)
        else:
            quotas = sorted({(d.buyer_key, d.year) for d in differences})
            await hashes.restore(rebuilt, quotas)
            print(f"repaired {len(quotas)} buyer-year quotas")
        return DIFFERENT
    finally:
        await client.aclose()
