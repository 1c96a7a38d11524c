"""Batch throughput under a venue rate limit: how much of the allowed rate `transfer_many` uses.

Run as ``python benchmarks/batch_bench.py`` (or ``nox -s bench``). A `FakeHTX` served on
loopback (``xferkit.testing.serve``) in a child process, so that its clock reads arrival times
unperturbed by the client's event loop, admits ``R`` transfer requests per sliding second and
answers the rest with HTTP 429 (counted in ``FakeHTX.rate_limited``). The client is configured
with ``HTX(rate_limit=R x --client-share)`` (the same rate by default) and runs
``N = R x --seconds`` transfers through ``Client.transfer_many`` (``SqliteJournal`` in a
temporary directory, concurrency 16). Every request moves a different amount: on HTX,
identical movements are spaced apart on purpose (see docs/performance.md), which is not what
this measures.

Reported per row, from the fake's own records: the achieved rate of executed transfers (over
the span from the first execution to the last) as a share of ``R``; the 429s the fake sent;
the most transfer requests it received, and executed, in any sliding 1-s window; and the
batch's wall time. This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import attrs

import xferkit

ACCESS_KEY = "bench-access-key"
SECRET = "bench-secret"  # noqa: S105 - the fake venue's made-up credential
TRANSFER_PATH = "/v2/account/transfer"
CONCURRENCY = 16
SERVE_FLAG = "--serve-fake-htx"


# -- the fake venue, in a child process ---------------------------------------------------------


async def _serve_until_stdin_closes(rate_limit: float) -> None:
    """Serve a rate-limited FakeHTX, print its URL; on stdin EOF print what it saw, as JSON."""
    from xferkit.testing import FakeHTX, serve  # noqa: PLC0415 - only the child needs it

    fake = FakeHTX(access_key=ACCESS_KEY, secret=SECRET, rate_limit=rate_limit)
    async with serve(fake) as server:
        print(server.url("htx"), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
    report = {
        "requests": [
            r.real_time
            for r in fake.requests
            if r.request.method == "POST" and r.request.path == TRANSFER_PATH
        ],
        "executed": sorted(e.executed_at.timestamp() for e in fake.audit),
        "rate_limited": fake.rate_limited,
    }
    print(json.dumps(report), flush=True)


@contextlib.contextmanager
def fake_htx_server(rate_limit: float) -> Iterator[tuple[str, dict[str, object]]]:
    """Run the fake in a child process; yield its URL and a dict filled with its report on exit."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, SERVE_FLAG, str(rate_limit)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    report: dict[str, object] = {}
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the fake server did not start (it printed {url!r})")
        yield url, report
        child.stdin.close()
        report.update(json.loads(child.stdout.readline()))
    finally:
        if child.stdin is not None and not child.stdin.closed:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- measuring ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Row:
    """One rate limit."""

    rate_limit: float
    client_rate: float
    transfers: int
    executed_times: Sequence[float]
    request_times: Sequence[float]
    rate_limited: int
    failures: int
    wall_seconds: float

    @property
    def achieved(self) -> float:
        """Executed transfers per second, first execution to last."""
        times = self.executed_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    @staticmethod
    def busiest_second(times: Sequence[float]) -> int:
        """The most events in any window [t, t + 1 s) starting at an event."""
        ordered = sorted(times)
        return max(
            (bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0
        )


def requests(count: int) -> Iterator[xferkit.TransferRequest]:
    """``count`` spot-to-otc transfers, each of a different amount."""
    for n in range(count):
        yield xferkit.TransferRequest(
            venue="htx",
            currency="usdt",
            amount=f"1.{n:05d}",
            from_account="spot",
            to_account="otc",
        )


async def run_row(rate_limit: float, args: argparse.Namespace) -> Row:
    """Run ``rate_limit x seconds`` transfers against a fake limited to ``rate_limit``/s."""
    count = round(rate_limit * args.seconds)
    client_rate = rate_limit * args.client_share
    failures = 0
    with fake_htx_server(rate_limit) as (url, report):
        htx = xferkit.HTX(ACCESS_KEY, SECRET, base_url=url, rate_limit=client_rate)
        with tempfile.TemporaryDirectory(prefix="xferkit-bench-", dir=args.sqlite_dir) as tmp:
            journal = xferkit.SqliteJournal(Path(tmp) / "journal.sqlite3")
            began = time.perf_counter()
            async with xferkit.Client(htx, journal=journal) as client:
                async for outcome in client.transfer_many(requests(count), concurrency=CONCURRENCY):
                    if not isinstance(outcome, xferkit.Receipt):
                        failures += 1
            wall = time.perf_counter() - began
    return Row(
        rate_limit=rate_limit,
        client_rate=client_rate,
        transfers=count,
        executed_times=report["executed"],  # type: ignore[arg-type]
        request_times=report["requests"],  # type: ignore[arg-type]
        rate_limited=report["rate_limited"],  # type: ignore[arg-type]
        failures=failures,
        wall_seconds=wall,
    )


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    header = (
        "allowed/s",
        "client/s",
        "transfers",
        "achieved/s",
        "utilisation",
        "429s",
        "max req in 1 s",
        "max exec in 1 s",
        "failed",
        "wall s",
    )
    lines = [
        (
            f"{r.rate_limit:g}",
            f"{r.client_rate:g}",
            str(r.transfers),
            f"{r.achieved:.2f}",
            f"{100 * r.achieved / r.rate_limit:.1f}%",
            str(r.rate_limited),
            str(Row.busiest_second(r.request_times)),
            str(Row.busiest_second(r.executed_times)),
            str(r.failures),
            f"{r.wall_seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


async def main(args: argparse.Namespace) -> None:
    """Run one row per rate limit and print the table."""
    rows = [await run_row(rate, args) for rate in args.rate_limits]
    print(
        f"transfer_many against a loopback FakeHTX (child process) admitting R requests per "
        f"sliding second; client HTX(rate_limit=R x {args.client_share:g}); R x "
        f"{args.seconds:g} transfers per row, concurrency {CONCURRENCY}, SqliteJournal; "
        f"utilisation = achieved / R; {os.cpu_count()} CPUs"
    )
    print(table(rows))


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate-limits",
        type=float,
        nargs="+",
        default=[10.0, 50.0, 200.0],
        help="the venue's allowed rates R, one row each",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="each row runs R x seconds transfers"
    )
    parser.add_argument(
        "--client-share",
        type=float,
        default=1.0,
        help="the client's rate_limit as a share of R (1 = the venue's own limit)",
    )
    parser.add_argument("--sqlite-dir", default=tempfile.gettempdir(), help="where SQLite writes")
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[1:2] == [SERVE_FLAG]:
        anyio.run(_serve_until_stdin_closes, float(sys.argv[2]))
    else:
        anyio.run(main, parse_args())
