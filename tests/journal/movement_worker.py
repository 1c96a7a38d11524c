"""One of two processes sending an identical HTX movement at the same instant through one
journal (`test_movement_processes`).

It sends 25 usdt spot -> usdt_futures under its own key to the loopback fake HTX at
``--start-at`` and prints the outcome as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import anyio

import xferkit

HTX_ACCESS_KEY = "movement-htx-access-key-0001"
HTX_SECRET = "movement-htx-secret-5c1d"


def journal_of(spec: str) -> xferkit.Journal:
    """``postgresql://...#schema`` for PostgreSQL, else a SQLite path."""
    if spec.startswith("postgresql://"):
        dsn, _, schema = spec.partition("#")
        return xferkit.PostgresJournal(dsn, schema=schema)
    return xferkit.SqliteJournal(spec)


async def run(journal: str, url: str, key: str, start_at: float) -> dict[str, str]:
    htx = xferkit.HTX(HTX_ACCESS_KEY, HTX_SECRET, base_url=url)
    retry = xferkit.RetryPolicy(deadline=60.0)
    async with xferkit.Client(htx, journal=journal_of(journal), retry=retry) as client:
        await anyio.sleep(max(0.0, start_at - time.time()))  # both send together
        try:
            receipt = await client.transfer(
                "htx",
                currency="usdt",
                amount="25",
                from_account="spot",
                to_account="usdt_futures",
                key=key,
            )
        except xferkit.XferError as exc:
            return {"key": key, "error": repr(exc)}
    return {"key": key, "status": receipt.status.value}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    args = parser.parse_args()
    print(json.dumps(anyio.run(run, args.journal, args.url, args.key, args.start_at)))


if __name__ == "__main__":
    main()
