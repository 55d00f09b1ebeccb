"""The customs side of the benchmark: a gateway subscriber in its own process (SubscribeBatches).

Writes one line per delivered declaration, ``<declarationId> <wall-clock ms> <decidedAt ms>``
(when order_match decided it), to ``--out``
(flushed every 100 ms so the benchmark can follow progress), until it is terminated.
A process of its own, so that its receive times are not delayed by the load producer.

    python -m bench.subscriber --credentials FILE --out FILE
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import time

from services.gateway.client import Credentials, GatewayClient


async def follow(credentials: Credentials, out_path: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cursor = ""
    with open(out_path, "w", encoding="utf-8") as out:
        last_flush = time.monotonic()
        async with GatewayClient(credentials) as gw:
            while not stop.is_set():
                async for batch in gw.subscribe_batches(cursor, idle_timeout=0.5):
                    now = f"{time.time() * 1000:.1f}"
                    for item in batch.declarations:
                        out.write(f"{item.declaration_id} {now} {item.decided_at_ms}\n")
                    if batch.declarations:
                        cursor = batch.declarations[-1].cursor
                    if time.monotonic() - last_flush > 0.1:
                        out.flush()
                        last_flush = time.monotonic()
                    if stop.is_set():
                        break
                out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credentials", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    asyncio.run(follow(Credentials.from_file(args.credentials), args.out))


if __name__ == "__main__":
    main()
