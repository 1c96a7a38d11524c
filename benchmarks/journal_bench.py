"""Journal throughput: claims and records per second, SQLite against PostgreSQL.

Run as ``python benchmarks/journal_bench.py`` (or ``nox -s bench``). Each simulated transfer
does what the engine does for a transfer that succeeds at the first attempt: one ``claim``
(the intent, durable before any send), one ``save`` of ``IN_FLIGHT`` (the attempt, durable
before it is sent) and one ``save`` of ``SUCCEEDED`` that releases the lease. No HTTP is
involved: the figures are the journal's ceiling, not the SDK's.

SQLite writes a file in a temporary directory (``--sqlite-dir`` to choose the disk);
PostgreSQL uses ``XFERKIT_BENCH_POSTGRES_DSN`` (else ``XFERKIT_TEST_POSTGRES_DSN``, else the
local test server) in a schema of its own, dropped afterwards. A backend that cannot be
reached is reported and skipped. This is a benchmark, not a test: nothing is asserted.

First it measures the disk itself (`fsync_floor`): a 4 KiB write and ``fdatasync`` at a fixed
rate, with nothing else running. Every commit of a durable journal waits for at least one such
flush, so no journal on that disk can have a better tail than this.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import anyio
import attrs

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Intent, Journal

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONCURRENCY = (1, 8, 32)
FSYNC_RATE = 1000.0  # flushes a second when timing the disk alone (`fsync_floor`)
OPERATIONS_PER_TRANSFER = 3  # claim + save(IN_FLIGHT) + save(SUCCEEDED)
LEASE_SECONDS = 60.0
BODY = '{"bizId":"bench","from":"SPOT","to":"FUTURES_U","currency":"usdt","amount":"10"}'
PARAMS = '{"amount":"10","currency":"usdt","from_account":"spot","to_account":"usdt_futures"}'


@attrs.frozen(kw_only=True)
class Result:
    """One backend at one concurrency."""

    backend: str
    concurrency: int
    transfers: int
    seconds: float
    latencies: list[float]

    @property
    def transfers_per_second(self) -> float:
        """Whole transfers (three journal writes each) per second."""
        return self.transfers / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        """The latency of one whole transfer at ``fraction`` (0..1), in milliseconds."""
        return percentiles_ms(self.latencies, fraction)[0]


def new_intent(run: str, n: int) -> Intent:
    """A fresh intent, shaped like an XT transfer's."""
    return Intent(
        key=f"bench-{run}-{n:07d}",
        venue="xt",
        fingerprint="0" * 64,
        params=PARAMS,
        token=f"bench-{run}-{n:07d}",
        body=BODY,
        created_at=datetime.now(timezone.utc),
    )


async def one_transfer(journal: Journal, intent: Intent, owner: str) -> None:
    """Claim, record the attempt, record the success: the engine's three durable writes."""
    claim = await journal.claim(intent, owner=owner, lease_seconds=LEASE_SECONDS)
    now = datetime.now(timezone.utc)
    sent = attrs.evolve(
        claim.intent,
        status=TransferStatus.IN_FLIGHT,
        attempts=1,
        first_sent_at=now,
        first_sent_venue_ms=int(now.timestamp() * 1000),
        last_sent_at=now,
    )
    await journal.save(sent, owner=owner, lease_seconds=LEASE_SECONDS)
    done = attrs.evolve(
        sent,
        status=TransferStatus.SUCCEEDED,
        transfer_id="226972662307830528",
        finished_at=datetime.now(timezone.utc),
    )
    await journal.save(done, owner=owner, lease_seconds=None)


async def measure(
    backend: str, journal: Journal, concurrency: int, seconds: float, warmup: int
) -> Result:
    """Run transfers ``concurrency`` at a time for about ``seconds``."""
    run = uuid.uuid4().hex[:8]
    for n in range(warmup):  # connections opened, statements prepared, file created
        await one_transfer(journal, new_intent(f"warm{run}", n), owner="bench")
    latencies: list[float] = []
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        owner = f"bench-{index}"
        while time.perf_counter() < stop_at:
            intent = new_intent(run, next(counter))
            began = time.perf_counter()
            await one_transfer(journal, intent, owner)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(concurrency):
            tg.start_soon(worker, index)
    elapsed = time.perf_counter() - began
    return Result(
        backend=backend,
        concurrency=concurrency,
        transfers=len(latencies),
        seconds=elapsed,
        latencies=latencies,
    )


def fsync_floor(directory: Path, seconds: float, rate: float = FSYNC_RATE) -> list[float]:
    """Latencies of ``fdatasync`` after a 4 KiB write, ``rate`` times a second, in ``directory``.

    Paced rather than back to back, as a journal under moderate load flushes; blocking calls
    on purpose (no event loop, no thread hop): this is the disk's own figure.
    """
    latencies: list[float] = []
    page = os.urandom(4096)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        fd = os.open(Path(tmp) / "floor", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            began = time.perf_counter()
            for n in range(int(seconds * rate)):
                delay = began + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                os.pwrite(fd, page, (n % 256) * len(page))  # a small file, rewritten in place
                flushed = time.perf_counter()
                os.fdatasync(fd)
                latencies.append(time.perf_counter() - flushed)
        finally:
            os.close(fd)
    return latencies


def percentiles_ms(latencies: list[float], *fractions: float) -> list[float]:
    """``latencies`` at each of ``fractions`` (0..1), in milliseconds."""
    ordered = sorted(latencies)
    return [1000 * ordered[min(len(ordered) - 1, int(f * len(ordered)))] for f in fractions]


async def bench_sqlite(directory: Path, seconds: float) -> list[Result]:
    """SQLite: a fresh file per concurrency level."""
    results = []
    for concurrency in CONCURRENCY:
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            journal = xferkit.SqliteJournal(Path(tmp) / "journal.sqlite3")
            await journal.open()
            try:
                results.append(await measure("sqlite", journal, concurrency, seconds, warmup=20))
            finally:
                await journal.aclose()
    return results


async def bench_postgres(dsn: str, seconds: float) -> list[Result]:
    """PostgreSQL: one schema of its own (dropped after), a pool as large as the concurrency."""
    import asyncpg  # noqa: PLC0415 - only this backend needs it

    schema = f"xferkit_bench_{uuid.uuid4().hex[:12]}"
    results = []
    try:
        for concurrency in CONCURRENCY:
            journal = xferkit.PostgresJournal(
                dsn, schema=schema, min_size=concurrency, max_size=concurrency
            )
            await journal.open()
            try:
                results.append(
                    await measure("postgresql", journal, concurrency, seconds, warmup=20)
                )
            finally:
                await journal.aclose()
    finally:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await connection.close()
    return results


def table(results: list[Result]) -> str:
    """The results as an aligned text table."""
    header = ("backend", "concurrency", "transfers/s", "claims+records/s", "p50 ms", "p99 ms")
    rows = [
        (
            r.backend,
            str(r.concurrency),
            f"{r.transfers_per_second:,.0f}",
            f"{r.transfers_per_second * OPERATIONS_PER_TRANSFER:,.0f}",
            f"{r.percentile_ms(0.50):.2f}",
            f"{r.percentile_ms(0.99):.2f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        # The backend's name left-aligned, the figures right-aligned.
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


async def main(args: argparse.Namespace) -> None:
    """Benchmark every reachable backend and print the table."""
    floor = fsync_floor(Path(args.sqlite_dir), args.seconds)
    p50, p99, p999, most = percentiles_ms(floor, 0.5, 0.99, 0.999, 1.0)
    print(
        f"the disk under {args.sqlite_dir}: 4 KiB write + fdatasync, {FSYNC_RATE:,.0f}/s for "
        f"{args.seconds:g} s: p50 {p50:.2f} ms, p99 {p99:.2f} ms, p99.9 {p999:.2f} ms, "
        f"max {most:.1f} ms\n"
    )
    results: list[Result] = []
    results += await bench_sqlite(Path(args.sqlite_dir), args.seconds)
    try:
        results += await bench_postgres(args.dsn, args.seconds)
    except (OSError, xferkit.JournalError) as exc:
        print(f"PostgreSQL skipped: {exc}")
    print(
        f"{args.seconds:g} s per row; each transfer = claim + save(IN_FLIGHT) + save(SUCCEEDED); "
        f"{os.cpu_count()} CPUs"
    )
    print(table(results))


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "XFERKIT_BENCH_POSTGRES_DSN", os.environ.get("XFERKIT_TEST_POSTGRES_DSN", DEFAULT_DSN)
        ),
        help="PostgreSQL to benchmark (its own schema is created and dropped)",
    )
    parser.add_argument("--sqlite-dir", default=tempfile.gettempdir(), help="where SQLite writes")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each row")
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, parse_args())
