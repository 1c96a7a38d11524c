"""Fleets: four processes share one HTX account's rate limit through the PostgreSQL journal.

Run as ``python benchmarks/fleet_rate_bench.py`` (or ``nox -s bench``). The target of issue 18:
``--workers`` processes (4), each a `Client` configured ``HTX(rate_limit=R)`` (5/s), submit
``--keys`` keyed transfers each (40) through ``transfer_many`` at once, on one
`PostgresJournal` schema, against one `FakeHTX(rate_limit=R)` served on loopback by this
process: the venue allows ``R`` transfer requests in any sliding second for the one UID they
all use. Every transfer moves its own amount, so the fake's audit tells them apart.

With ``--compare`` a third row runs the same workers with limiters of their own
(``Client(rate_store=None)``, as before the shared budget). With ``--kill-after N`` the first
worker SIGKILLs itself after its N-th answer, as a crash does,
holding its rate slot and the leases of its transfers in flight; the rate is then also
reported over the time after its death, and a final ``resume()`` settles what it left.

Reported: requests/s used over the busy interval (first to last transfer request at the
venue) and as a share of ``R``, requests refused for rate (``FakeHTX.rate_limited``), the most
requests in any sliding second, and exactly-once (executions per key, from the venue's audit).
Needs PostgreSQL (``XFERKIT_BENCH_POSTGRES_DSN``, default the test server's); without one it
says so and exits 0. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

import xferkit
from xferkit.testing import FakeHTX, serve

ACCESS_KEY, SECRET = "bench-fleet-htx-key", "bench-fleet-htx-secret"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).resolve()


def plan(index: int, keys: int) -> list[xferkit.TransferRequest]:
    """Worker ``index``'s transfers: a key and an amount of their own."""
    return [
        xferkit.TransferRequest(
            venue="htx",
            currency="usdt",
            amount=Decimal(index * 1000 + n + 1) / 1000 + 1,
            from_account="spot",
            to_account="usdt_futures",
            key=f"bench-w{index}-{n:03d}",
        )
        for n in range(keys)
    ]


async def worker(args: argparse.Namespace) -> None:
    """One fleet member: wait for the go on stdin, run its batch (or resume), report."""
    htx = xferkit.HTX(ACCESS_KEY, SECRET, base_url=args.url, rate_limit=args.rate)
    journal = xferkit.PostgresJournal(args.dsn, schema=args.schema, max_size=4)
    retry = xferkit.RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=1.0)
    store = None if args.per_process else "journal"
    async with xferkit.Client(
        htx, journal=journal, retry=retry, timeout=1.0, rate_store=store
    ) as client:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        if args.index < 0:
            await client.resume()
            return
        answered = 0
        async for _ in client.transfer_many(plan(args.index, args.keys), concurrency=8):
            answered += 1
            if answered == args.kill_after:
                print(json.dumps({"died_at": time.time()}), flush=True)
                os.kill(os.getpid(), signal.SIGKILL)


async def run_fleet(
    args: argparse.Namespace, url: str, schema: str, indexes: list[int]
) -> list[float]:
    """Start the workers, release them together, wait for all; the death times reported."""
    processes = []
    for index in indexes:
        command = [
            sys.executable, str(HERE), "--worker", "--url", url, "--dsn", args.dsn,
            "--schema", schema, "--index", str(index), "--keys", str(args.keys),
            "--rate", str(args.rate),
            "--kill-after", str(args.kill_after if index == 0 else 0),
            *(["--per-process"] if args.per_process else []),
        ]  # fmt: skip
        processes.append(await anyio.open_process(command, stdin=-1, stdout=-1))
    for process in processes:  # every client open before any starts
        assert process.stdout is not None
        await process.stdout.receive()
    for process in processes:
        assert process.stdin is not None
        await process.stdin.send(b"go\n")
    died: list[float] = []
    for process in processes:
        await process.wait()
        assert process.stdout is not None
        rest = b""
        try:
            async for chunk in process.stdout:
                rest += chunk
        except anyio.ClosedResourceError:
            pass
        died += [json.loads(line)["died_at"] for line in rest.splitlines() if b"died_at" in line]
        await process.aclose()
    return died


def rate_over(times: list[float]) -> float:
    """Requests a second from the first request to the last."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def max_in_window(times: list[float]) -> int:
    """The most requests in any sliding second."""
    return max((sum(1 for t in times[i:] if t < s + 1.0) for i, s in enumerate(times)), default=0)


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """One run of the fleet; the figures."""
    schema = f"xferkit_bench_{uuid.uuid4().hex[:10]}"
    fake = FakeHTX(access_key=ACCESS_KEY, secret=SECRET, rate_limit=args.rate)
    began = time.monotonic()
    try:
        async with serve(fake) as server:
            url = server.url("htx")
            died = await run_fleet(args, url, schema, list(range(args.workers)))
            posts = sorted(r.real_time for r in fake.requests if r.request.method == "POST")
            if died:
                await run_fleet(args, url, schema, [-1])  # resume() settles what it left
    finally:
        import asyncpg  # noqa: PLC0415

        connection = await asyncpg.connect(args.dsn)
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()
    executions = [
        fake.executions_matching(r.from_account, r.to_account, r.currency, r.amount)
        for i in range(args.workers)
        for r in plan(i, args.keys)
    ]
    after = [t for t in posts if died and t > died[0]]
    return {
        "requests": len(posts),
        "rate": rate_over(posts),
        "after_kill": rate_over(after) if died else None,
        "refused": fake.rate_limited,
        "max_in_1s": max_in_window(posts),
        "once": sum(1 for n in executions if n == 1),
        "twice": sum(1 for n in executions if n > 1),
        "never": sum(1 for n in executions if n == 0),
        "wall": time.monotonic() - began,
    }


async def main(args: argparse.Namespace) -> None:
    """Check for PostgreSQL, run the plain and the SIGKILL scenario, print a table."""
    import asyncpg  # noqa: PLC0415

    try:
        await (await asyncpg.connect(args.dsn, timeout=5)).close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"fleet_rate_bench: no PostgreSQL at {args.dsn} ({exc}); skipped")
        return
    print(
        f"{args.workers} processes x {args.keys} HTX transfers, venue and clients at "
        f"{args.rate}/s for one UID, one PostgreSQL journal"
    )
    print("scenario   | requests | used/s | of limit | after kill/s | 429s | max in 1 s | "
          "exactly once | twice | never | wall s")  # fmt: skip
    kill_after = args.kill_after
    rows = [("all alive", 0, False), ("1 killed", kill_after, False)]
    if args.compare:
        rows.append(("per-process", 0, True))
    for name, kill, per_process in rows:
        args.kill_after, args.per_process = kill, per_process
        r = await scenario(args)
        after = "-" if r["after_kill"] is None else f"{r['after_kill']:.2f}"
        print(
            f"{name:10} | {r['requests']:8} | {r['rate']:6.2f} | {r['rate'] / args.rate:7.1%} | "
            f"{after:>12} | {r['refused']:4} | {r['max_in_1s']:10} | {r['once']:12} | "
            f"{r['twice']:5} | {r['never']:5} | {r['wall']:.1f}"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--kill-after", type=int, default=10)
    parser.add_argument("--dsn", default=os.environ.get("XFERKIT_BENCH_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the workers with limiters of their own (rate_store=None)",
    )
    parser.add_argument("--per-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    anyio.run(worker if arguments.worker else main, arguments)
