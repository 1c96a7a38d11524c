"""Transfer throughput and latency against the loopback fake XT: a raw httpx loop and xferkit.

Run as ``python benchmarks/transfer_bench.py`` (or ``nox -s bench``). A child process serves
a `FakeXT` (no faults, balances nothing can exhaust) with ``xferkit.testing.serve``, a real
HTTP/1.1 server on loopback, so the server does not share the client's event loop or core.
Against it, for concurrency 1, 8 and 32, each client transfers as fast as it can:

* ``raw httpx``: a hand-written loop: ``httpx.AsyncClient`` POSTing XT transfers signed with
  ``xferkit.venues.xt.sign``, a fresh bizId each, the answer parsed and checked. It has no
  journal, no retries and no rate limiter: the floor for anything built on httpx.
* ``xferkit memory`` / ``sqlite`` / ``postgresql``: ``Client.transfer()`` with
  ``MemoryJournal``, ``SqliteJournal`` (a file in a temporary directory) or
  ``PostgresJournal`` (a schema of its own, dropped afterwards; a pool as large as the
  concurrency), ``XT(rate_limit=1e9)`` so the client-side limiter never waits.

Each row runs for ``--seconds`` after a warm-up (connections opened, clock synced, statements
prepared). Rows are interleaved (every round runs each concurrency for every client, the
clients' order rotated each round) and the table shows the median of ``--rounds`` rounds, with
the spread of throughput. ``server CPU`` is the fake server's CPU time over the row's wall time
(100% = one core); ``client CPU`` is this process's (all its threads). This is a benchmark,
not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import attrs
import httpx

import xferkit
from xferkit.venues.xt import TRANSFER_PATH, sign

API_KEY = "bench-key"
SECRET = "bench-secret"  # noqa: S105 - the fake venue's made-up credential
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONCURRENCY = (1, 8, 32)
CLIENTS = ("raw httpx", "xferkit memory", "xferkit sqlite", "xferkit postgresql")
RECV_WINDOW_MS = 5000
SIGN_EARLY_MS = 200  # as xferkit does: a timestamp ahead of the venue's clock is refused sooner
# The same pool limits xferkit's own transport uses, so the raw loop is not handicapped.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30)
SERVE_FLAG = "--serve-fake-xt"

Transfer = Callable[[], Awaitable[None]]


# -- the fake venue, in a child process ---------------------------------------------------------


async def _serve_forever() -> None:
    """Serve a FakeXT on loopback, print its URL, and stop when stdin closes."""
    from xferkit.testing import FakeXT, serve  # noqa: PLC0415 - only the child needs it

    plenty = {"usdt": Decimal(10) ** 15}
    fake = FakeXT(api_key=API_KEY, secret=SECRET, balances={"SPOT": plenty, "FUTURES_U": plenty})
    async with serve(fake) as server:
        print(server.url("xt"), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # the parent closes stdin to stop us


@contextlib.contextmanager
def fake_xt_server() -> Iterator[tuple[str, int]]:
    """Start the fake XT server in a child process; yield its URL and pid."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, SERVE_FLAG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the fake server did not start (it printed {url!r})")
        yield url, child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the clients ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_httpx(url: str, concurrency: int) -> AsyncIterator[Transfer]:
    """The floor: sign, POST, parse, check; nothing else."""
    del concurrency
    async with httpx.AsyncClient(
        limits=LIMITS, headers={"user-agent": "bench"}, follow_redirects=False
    ) as http:

        async def transfer() -> None:
            body = json.dumps(
                {
                    "bizId": str(uuid.uuid4()),
                    "from": "SPOT",
                    "to": "FUTURES_U",
                    "currency": "usdt",
                    "amount": "1",
                },
                separators=(",", ":"),
            )
            timestamp = int(time.time() * 1000) - SIGN_EARLY_MS
            signature = sign(
                api_key=API_KEY,
                secret=SECRET,
                method="POST",
                path=TRANSFER_PATH,
                timestamp_ms=timestamp,
                recv_window_ms=RECV_WINDOW_MS,
                body=body,
            )
            response = await http.post(
                url + TRANSFER_PATH,
                content=body.encode(),
                headers={
                    "validate-algorithms": "HmacSHA256",
                    "validate-appkey": API_KEY,
                    "validate-recvwindow": str(RECV_WINDOW_MS),
                    "validate-timestamp": str(timestamp),
                    "validate-signature": signature,
                    "content-type": "application/json",
                },
            )
            answer = response.json()
            if response.status_code != 200 or answer.get("mc") != "SUCCESS":
                raise RuntimeError(f"transfer refused: {response.status_code} {answer}")

        yield transfer


def xferkit_client(
    make_journal: Callable[[int], contextlib.AbstractAsyncContextManager[xferkit.Journal]],
) -> Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]]:
    """xferkit's ``Client.transfer()`` with the journal ``make_journal(concurrency)`` yields."""

    @contextlib.asynccontextmanager
    async def client(url: str, concurrency: int) -> AsyncIterator[Transfer]:
        xt = xferkit.XT(API_KEY, SECRET, base_url=url, rate_limit=1e9)
        async with (
            make_journal(concurrency) as journal,
            xferkit.Client(xt, journal=journal) as xfer,
        ):

            async def transfer() -> None:
                receipt = await xfer.transfer(
                    "xt", currency="usdt", amount=1, from_account="spot", to_account="usdt_futures"
                )
                if receipt.status is not xferkit.TransferStatus.SUCCEEDED:
                    raise RuntimeError(f"transfer not settled: {receipt}")

            yield transfer

    return client


@contextlib.asynccontextmanager
async def memory_journal(concurrency: int) -> AsyncIterator[xferkit.Journal]:
    """A fresh MemoryJournal."""
    del concurrency
    yield xferkit.MemoryJournal()


@contextlib.asynccontextmanager
async def sqlite_journal(concurrency: int) -> AsyncIterator[xferkit.Journal]:
    """A SqliteJournal in a fresh temporary directory (on the default temp disk)."""
    del concurrency
    with tempfile.TemporaryDirectory(prefix="xferkit-bench-") as tmp:
        yield xferkit.SqliteJournal(Path(tmp) / "journal.sqlite3")


def postgres_journal(
    dsn: str, schema: str
) -> Callable[[int], contextlib.AbstractAsyncContextManager[xferkit.Journal]]:
    """PostgresJournals in ``schema`` with a pool sized to the concurrency."""

    @contextlib.asynccontextmanager
    async def journal(concurrency: int) -> AsyncIterator[xferkit.Journal]:
        yield xferkit.PostgresJournal(
            dsn, schema=schema, min_size=concurrency, max_size=concurrency
        )

    return journal


# -- measuring ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Row:
    """One client at one concurrency, one round."""

    client: str
    concurrency: int
    transfers: int
    seconds: float
    latencies: list[float] = attrs.field(repr=False)
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        """Transfers per second."""
        return self.transfers / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        """Latency of one transfer at ``fraction`` (0..1), in milliseconds."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_row(
    name: str,
    *,
    client: Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]],
    url: str,
    server_pid: int,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Row:
    """Warm up, then run ``concurrency`` transfer loops for ``seconds``."""
    async with client(url, concurrency) as transfer:
        latencies: list[float] = []

        async def loop(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                began = time.perf_counter()
                await transfer()
                if record:
                    latencies.append(time.perf_counter() - began)

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(loop, time.perf_counter() + warmup, False)
        server_before, client_before = cpu_seconds(server_pid), time.process_time()
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(loop, began + seconds, True)
        elapsed = time.perf_counter() - began
        server_cpu = (cpu_seconds(server_pid) - server_before) / elapsed
        client_cpu = (time.process_time() - client_before) / elapsed
    return Row(
        client=name,
        concurrency=concurrency,
        transfers=len(latencies),
        seconds=elapsed,
        latencies=latencies,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )


def table(rows: dict[tuple[str, int], list[Row]], rounds: int) -> str:
    """Medians over the rounds, as an aligned text table."""
    header = (
        "client",
        "concurrency",
        "transfers/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "vs raw",
        "server CPU",
        "client CPU",
    )
    floor = {
        c: statistics.median(r.rate for r in rows[("raw httpx", c)])
        for c in CONCURRENCY
        if ("raw httpx", c) in rows
    }
    lines = []
    for name in CLIENTS:
        for concurrency in CONCURRENCY:
            runs = rows.get((name, concurrency))
            if not runs:
                continue
            rate = statistics.median(r.rate for r in runs)
            rates = [r.rate for r in runs]
            spread = (max(rates) - min(rates)) / rate if rounds > 1 else 0.0
            ratio = f"{rate / floor[concurrency]:.2f}x" if concurrency in floor else "-"
            lines.append(
                (
                    name,
                    str(concurrency),
                    f"{rate:,.0f}",
                    f"{100 * spread:.0f}%",
                    f"{statistics.median(r.percentile_ms(0.50) for r in runs):.1f}",
                    f"{statistics.median(r.percentile_ms(0.99) for r in runs):.1f}",
                    ratio,
                    f"{100 * statistics.median(r.server_cpu for r in runs):.0f}%",
                    f"{100 * statistics.median(r.client_cpu for r in runs):.0f}%",
                )
            )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


async def drop_schema(dsn: str, schema: str) -> None:
    """Remove the benchmark's PostgreSQL schema."""
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL rows need it

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


async def postgres_reachable(dsn: str) -> bool:
    """Whether PostgreSQL answers at ``dsn``."""
    import asyncpg  # noqa: PLC0415

    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL skipped: {exc}")
        return False
    await connection.close()
    return True


async def main(args: argparse.Namespace) -> None:
    """Run every round and print the table."""
    schema = f"xferkit_bench_{uuid.uuid4().hex[:12]}"
    clients: dict[str, Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]]]
    clients = {
        "raw httpx": raw_httpx,
        "xferkit memory": xferkit_client(memory_journal),
        "xferkit sqlite": xferkit_client(sqlite_journal),
    }
    if await postgres_reachable(args.dsn):
        clients["xferkit postgresql"] = xferkit_client(postgres_journal(args.dsn, schema))
    names = [name for name in CLIENTS if name in clients]
    rows: dict[tuple[str, int], list[Row]] = {}
    try:
        with fake_xt_server() as (url, pid):
            for round_ in range(args.rounds):
                for concurrency in CONCURRENCY:
                    shift = round_ % len(names)
                    for name in names[shift:] + names[:shift]:
                        row = await run_row(
                            name,
                            client=clients[name],
                            url=url,
                            server_pid=pid,
                            concurrency=concurrency,
                            seconds=args.seconds,
                            warmup=args.warmup,
                        )
                        rows.setdefault((name, concurrency), []).append(row)
                        if args.verbose:
                            print(
                                f"round {round_ + 1} {name} c={concurrency}: {row.rate:,.0f}/s",
                                flush=True,
                            )
    finally:
        if "xferkit postgresql" in clients:
            await drop_schema(args.dsn, schema)
    print(
        f"transfer() against the loopback FakeXT (child process): {args.seconds:g} s per row "
        f"after {args.warmup:g} s warm-up; median of {args.rounds} interleaved rounds; "
        f"spread = (max - min) / median throughput; {os.cpu_count()} CPUs; "
        f"httpx {httpx.__version__}"
    )
    print(table(rows, args.rounds))


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured duration of a row")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured lead-in of a row")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "XFERKIT_BENCH_POSTGRES_DSN", os.environ.get("XFERKIT_TEST_POSTGRES_DSN", DEFAULT_DSN)
        ),
        help="PostgreSQL for the PostgresJournal rows (its own schema is created and dropped)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each row as it ends")
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_FLAG]:
        anyio.run(_serve_forever)
    else:
        anyio.run(main, parse_args())
