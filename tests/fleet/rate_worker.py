"""One member of a rate-limited fleet: HTX transfers through `Client.transfer_many`.

Run as::

    python -m tests.fleet.rate_worker --dsn DSN --schema SCHEMA --htx-url URL --name w0 \
        --keys 40 [--wait-for-go] [--mode submit|resume]

Every process uses the same HTX account, configured ``rate_limit=5.0``, and submits keys of
its own (``--name`` tags them), each with an amount of its own, so the venue's audit tells
every key apart. Output is JSON lines, as `tests.fleet.worker` prints them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from decimal import Decimal
from typing import Any

import anyio

import xferkit

from .worker import HTX_ACCESS_KEY, HTX_PAIRS, HTX_SECRET, emit, error_line

RATE = 5.0


def plan(name: str, index: int, keys: int) -> list[xferkit.TransferRequest]:
    """The worker's keyed transfers: distinct amounts per worker ``index`` and key."""
    return [
        xferkit.TransferRequest(
            venue="htx",
            currency="usdt",
            amount=Decimal(index * 1000 + n + 1) / 1000 + 1,
            from_account=HTX_PAIRS[n % len(HTX_PAIRS)][0],
            to_account=HTX_PAIRS[n % len(HTX_PAIRS)][1],
            key=f"{name}-{n:03d}",
        )
        for n in range(keys)
    ]


async def run(args: argparse.Namespace) -> None:
    """Open the client, wait for the go, transfer the batch (or resume), summarise."""
    htx = xferkit.HTX(HTX_ACCESS_KEY, HTX_SECRET, base_url=args.htx_url, rate_limit=RATE)
    journal = xferkit.PostgresJournal(args.dsn, schema=args.schema, max_size=4)
    retry = xferkit.RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=1.0)
    counts: dict[str, int] = {}
    try:
        async with xferkit.Client(
            htx, journal=journal, retry=retry, timeout=1.0, lease_seconds=5.0
        ) as client:
            emit({"event": "started"})
            if args.wait_for_go:
                await anyio.to_thread.run_sync(sys.stdin.readline)
            began = time.time()
            if args.mode == "resume":
                for receipt in await client.resume():
                    counts[receipt.status.value] = counts.get(receipt.status.value, 0) + 1
            else:
                batch = plan(args.name, args.index, args.keys)
                async for result in client.transfer_many(batch, concurrency=args.concurrency):
                    line: dict[str, Any] = {"event": "outcome"}
                    if isinstance(result, Exception):
                        line.update(error_line(result))
                        line["key"] = getattr(getattr(result, "request", None), "key", None)
                        outcome = line["error"]
                    else:
                        line.update(key=result.key, status=result.status.value)
                        outcome = result.status.value
                    counts[outcome] = counts.get(outcome, 0) + 1
                    emit(line)
                    if sum(counts.values()) == args.die_after:
                        # Dies as a crash does: slots, leases and transfers in flight held.
                        emit({"event": "dying", "at": time.time()})
                        os.kill(os.getpid(), signal.SIGKILL)
    except Exception as exc:  # reported: the test tells typed errors from raw ones
        emit({"event": "failed", **error_line(exc)})
        return
    emit({"event": "done", "counts": counts, "began": began, "ended": time.time()})


def main() -> None:
    """Parse the arguments and run once."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--htx-url", required=True)
    parser.add_argument("--name", default="w0")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", choices=("submit", "resume"), default="submit")
    parser.add_argument("--wait-for-go", action="store_true")
    parser.add_argument("--die-after", type=int, default=0, help="SIGKILL itself after N")
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
