"""One of several processes taking slots from one shared rate budget (`test_shared_rate`).

It takes ``--takes`` slots through `PostgresJournal.rate_limiter` and prints, as JSON, the
database clock's reading right after each slot was granted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from xferkit import PostgresJournal
from xferkit._clock import SYSTEM_CLOCK


async def run(dsn: str, schema: str, takes: int, rate: float, start_at: float) -> list[float]:
    journal = PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        limiter = journal.rate_limiter("htx", "acct", rate, SYSTEM_CLOCK)
        await asyncio.sleep(start_at - time.time())  # every process starts taking together
        granted: list[float] = []

        async def one() -> None:
            assert await limiter.acquire()
            granted.append(
                await journal._run(
                    lambda c: c.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
                )
            )

        await asyncio.gather(*(one() for _ in range(takes)))
        return granted
    finally:
        await journal.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--takes", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.dsn, args.schema, args.takes, args.rate, args.start_at))))


if __name__ == "__main__":
    main()
