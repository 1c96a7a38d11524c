"""Recovery after cancellation on HTX: how long ``resume()`` takes to settle open intents.

Run as ``python benchmarks/resume_bench.py`` (or ``nox -s bench``). The target of issue 16:
``N`` HTX transfers (200 by default) are cancelled mid-request, ``--executed`` (70%) of them
after the in-process `FakeHTX` committed them (their answers lost) and the rest before their
requests reached it (never processed). A fresh client on the same ``SqliteJournal``, with
``RetryPolicy(deadline=8)`` (a trading engine's short call deadline) and HTX's default
``settle_seconds`` (10 s), then runs ``resume()`` at its default concurrency, on the real clock.

The fake venue and the client's limiter both allow 1,000 transfer requests per second
(``FakeHTX(rate_limit=1000)``, ``HTX(rate_limit=1000)``), well above HTX's real 1/s per UID:
what is measured is the settling (ledger reads, settle windows, concurrency), not the ~60 s a
real account's rate limit would take to resend 60 transfers one per second.

Reported per row: the wall time of ``resume()``, and of the whole recovery counted from the
cancellation (the settle window counts from there); the receipts by status and by what
confirmed them (the ledger for the executed ones, the venue's answer for the resent ones);
executions that are not exactly one per transfer, from the fake's audit (must be 0); the
ledger and time requests the sweep made. Transfers move different amounts (HTX keeps one
unresolved transfer per movement). This is a benchmark, not a test: nothing is asserted, but
a row that is not all ``SUCCEEDED`` exactly once says so.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import anyio
import attrs
import httpx

import xferkit
from xferkit.testing import FakeHTX, FakeTransport

ACCESS_KEY = "bench-access-key"
SECRET = "bench-secret"  # noqa: S105 - the fake venue's made-up credential
TRANSFER_PATH = "/v2/account/transfer"
LEDGER_PATH = "/v2/account/ledger"
TIME_PATH = "/v1/common/timestamp"
RATE_LIMIT = 1000.0
DEADLINE = 8.0


class CancelledMidRequest(httpx.AsyncBaseTransport):
    """The fake venue, with every transfer request hanging until its caller is cancelled:
    after the venue executed it when ``executed(amount)``, else before it reached the venue."""

    def __init__(self, fake: FakeHTX, executed: set[Decimal]) -> None:
        self._inner = FakeTransport(fake)
        self._executed = executed
        self.hanging = 0
        self.all_hanging = anyio.Event()
        self.expected = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != TRANSFER_PATH:
            return await self._inner.handle_async_request(request)
        amount = Decimal(json.loads(await request.aread())["amount"])
        if amount in self._executed:
            await self._inner.handle_async_request(request)  # committed; the answer is lost
        self.hanging += 1
        if self.hanging == self.expected:
            self.all_hanging.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


@attrs.frozen
class Row:
    """One run's figures."""

    intents: int
    executed_before: int
    concurrency: int
    resume_seconds: float
    recovery_seconds: float
    statuses: dict[str, int]
    confirmed_by: dict[str, int]
    wrong_executions: int
    ledger_requests: int
    time_requests: int


def htx() -> xferkit.HTX:
    """Default settle window and margin; a rate limit that does not bottleneck resends."""
    return xferkit.HTX(ACCESS_KEY, SECRET, rate_limit=RATE_LIMIT)


def args_for(amount: Decimal) -> dict[str, object]:
    return {
        "currency": "usdt",
        "amount": amount,
        "from_account": "spot",
        "to_account": "usdt_futures",
    }


async def leave_open(
    fake: FakeHTX, journal_path: Path, amounts: list[Decimal], executed: set[Decimal]
) -> None:
    """Start every transfer, and cancel them all once each request hangs."""
    transport = CancelledMidRequest(fake, executed)
    transport.expected = len(amounts)
    async with (
        httpx.AsyncClient(transport=transport) as http_client,
        xferkit.Client(
            htx(),
            journal=journal_path,
            http_client=http_client,
            retry=xferkit.RetryPolicy(deadline=DEADLINE),
        ) as client,
        anyio.create_task_group() as tasks,
    ):
        for n, amount in enumerate(amounts):
            tasks.start_soon(
                lambda n=n, amount=amount: client.transfer("htx", **args_for(amount), key=f"k{n}")
            )
        await transport.all_hanging.wait()
        tasks.cancel_scope.cancel()


async def run_row(count: int, share: float, concurrency: int, sqlite_dir: str) -> Row:
    """Leave ``count`` intents open, then resume them with a fresh client."""
    fake = FakeHTX(access_key=ACCESS_KEY, secret=SECRET, rate_limit=RATE_LIMIT)
    amounts = [Decimal(100 + n) for n in range(count)]
    executed = {a for n, a in enumerate(amounts) if n % 100 < share * 100}
    with tempfile.TemporaryDirectory(dir=sqlite_dir) as tmp:
        journal_path = Path(tmp) / "journal.sqlite3"
        await leave_open(fake, journal_path, amounts, executed)
        cancelled_at = time.perf_counter()
        seen = len(fake.requests)
        async with (
            httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
            xferkit.Client(
                htx(),
                journal=journal_path,
                http_client=http_client,
                retry=xferkit.RetryPolicy(deadline=DEADLINE),
            ) as client,
        ):
            began = time.perf_counter()
            receipts = await client.resume(concurrency=concurrency)
            ended = time.perf_counter()
    paths = collections.Counter(r.request.path for r in fake.requests[seen:])
    runs = collections.Counter(e.amount for e in fake.audit)
    return Row(
        intents=count,
        executed_before=len(executed),
        concurrency=concurrency,
        resume_seconds=ended - began,
        recovery_seconds=ended - cancelled_at,
        statuses=dict(collections.Counter(r.status.value for r in receipts)),
        confirmed_by=dict(
            collections.Counter(str(getattr(r.confirmed_by, "value", None)) for r in receipts)
        ),
        wrong_executions=sum(1 for a in amounts if runs[a] != 1),
        ledger_requests=paths[LEDGER_PATH],
        time_requests=paths[TIME_PATH],
    )


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    header = (
        "intents",
        "executed",
        "concurrency",
        "resume s",
        "from cancel s",
        "statuses",
        "confirmed by",
        "not once",
        "ledger reqs",
        "time reqs",
    )
    lines = [
        (
            str(r.intents),
            str(r.executed_before),
            str(r.concurrency),
            f"{r.resume_seconds:.2f}",
            f"{r.recovery_seconds:.2f}",
            " ".join(f"{k}={v}" for k, v in sorted(r.statuses.items())),
            " ".join(f"{k}={v}" for k, v in sorted(r.confirmed_by.items())),
            str(r.wrong_executions),
            str(r.ledger_requests),
            str(r.time_requests),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


async def main(args: argparse.Namespace) -> None:
    """Run one row per concurrency and print the table."""
    rows = [
        await run_row(args.intents, args.executed, concurrency, args.sqlite_dir)
        for concurrency in args.concurrency
    ]
    print(
        f"resume() of HTX intents left open by cancellation ({args.executed:.0%} executed, "
        f"the rest never processed); in-process FakeHTX, rate limits {RATE_LIMIT:g}/s; fresh "
        f"client, RetryPolicy(deadline={DEADLINE:g}), settle_seconds 10 (default), "
        f"SqliteJournal; target: from cancel <= 10 + 15 s; {os.cpu_count()} CPUs"
    )
    print(table(rows))


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=200, help="open intents to resume")
    parser.add_argument(
        "--executed", type=float, default=0.7, help="share executed before the cancellation"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[16],
        help="resume() concurrency, one row each (16 is the default)",
    )
    parser.add_argument("--sqlite-dir", default=tempfile.gettempdir(), help="where SQLite writes")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(anyio.run(main, parse_args()))
