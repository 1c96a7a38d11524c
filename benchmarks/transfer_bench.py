"""Transfer throughput and latency against the loopback fake XT: raw loops, ccxt and xferkit.

Run as ``python benchmarks/transfer_bench.py`` (or ``nox -s bench``); the comparison rows need
the ``bench`` group (``pip install -e . --group bench``: ccxt, aiohttp) and are
skipped without it. A child process serves a `FakeXT` (no faults, balances nothing can
exhaust) with ``xferkit.testing.serve``, a real HTTP/1.1 server on loopback, so the server does
not share the client's event loop. Against it, for concurrency 1, 8 and 32, each client
transfers as fast as it can:

* ``raw aiohttp``: a hand-written loop on ``aiohttp.ClientSession`` (64 connections, as
  xferkit's pool), POSTing XT transfers signed with ``xferkit.venues.xt.sign``, a fresh bizId
  each, the answer parsed and checked. No journal, retries or limiter.
* ``ccxt``: ``ccxt.async_support.xt(...).transfer("USDT", 1, "spot", "swap")`` with
  ``enableRateLimit=False``, its ``spot`` API URL pointed at the fake and its currency table
  preset (the fake serves no market data). ccxt names XT's headers ``xt-validate-*`` and signs
  that spelling; the fake, after XT's documentation, reads ``validate-*``. A ``sign()``
  override therefore calls ccxt's own ``sign()`` (its body, its HMAC), then renames the headers
  and signs once more the way the fake checks: one extra HMAC-SHA256 per request (a few µs).
  Everything else (request building, aiohttp session, error handling, parsing) is ccxt's.
* ``raw httpx`` and ``raw httpx+aiohttp``: the same loop as ``raw aiohttp``, on an
  ``httpx.AsyncClient`` built exactly as xferkit builds its own: httpx's transport, or
  xferkit's aiohttp-backed httpx transport (``xferkit._aiohttp``). The floor for each transport
  through ``AsyncClient.post``; xferkit's own client hands requests to the transport directly.
* ``xferkit <journal> / <transport>``: ``Client.transfer()`` with ``XT(rate_limit=1e9)`` (the
  limiter never waits) and ``MemoryJournal``, ``SqliteJournal`` (a fresh file in a temporary
  directory) or ``PostgresJournal`` (a schema of its own, dropped afterwards; a pool as large
  as the concurrency). The ``aiohttp`` rows are ``Client()`` as shipped (the default transport
  picks aiohttp when the ``fast`` extra is installed); the ``httpx`` rows pass an
  ``http_client`` built as ``backend="httpx"`` builds its own.

Those rows are closed loops: each of the callers starts its next transfer when the last one
returns, so latency and throughput are two views of one number (mean latency = callers /
throughput). Paced rows follow, the way a service sees load: transfers start on a fixed
schedule (``--rates`` per second, however many are still running), and each latency is
counted from the transfer's scheduled start, so a client that falls behind is charged for the
wait. They run for the clients in ``PACED_CLIENTS`` that ``--only`` leaves; a row that
completes less than 95% of the offered rate is marked as behind.

Each row runs for ``--seconds`` after a warm-up (connections opened, clock synced, statements
prepared). Rows are interleaved (every round runs each concurrency for every client, the
clients' order rotated each round) and the table shows the median of ``--rounds`` rounds, with
the spread of throughput. ``vs ccxt`` divides by ccxt's throughput at the same concurrency;
``vs raw`` by the raw loop on the same transport (``BASELINE``). ``server CPU`` is the fake
server's CPU time over the row's wall time (100% = one core); ``client CPU`` is this process's
(all its threads). Every library is imported before the first row and ``gc.freeze()`` is
called, so that ccxt's ~190,000 module objects do not lengthen the garbage-collection pauses
of the other rows (`preload_and_freeze`). This is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
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
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import attrs
import httpx

import xferkit
from xferkit._transport import _aiohttp_transport, _httpx_client
from xferkit.venues.xt import TRANSFER_PATH, sign

API_KEY = "bench-key"
SECRET = "bench-secret"  # noqa: S105 - the fake venue's made-up credential
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONCURRENCY = (1, 8, 32)
RATES = (500, 1000)
PACED_CLIENTS = (
    "raw aiohttp",
    "ccxt",
    "xferkit memory / aiohttp",
    "xferkit sqlite / aiohttp",
    "xferkit postgresql / aiohttp",
)
PACED_POOL = 32  # the concurrency a paced row's client is built for (PostgreSQL pool size)
JOURNALS = ("memory", "sqlite", "postgresql")
TRANSPORTS = ("httpx", "aiohttp")
CLIENTS = (
    "raw aiohttp",
    "ccxt",
    "raw httpx",
    "raw httpx+aiohttp",
    *(f"xferkit {journal} / {transport}" for journal in JOURNALS for transport in TRANSPORTS),
)
# Each row's "vs raw": the hand-written loop on the same transport.
BASELINE = {
    "ccxt": "raw aiohttp",
    "raw httpx+aiohttp": "raw aiohttp",
    **{f"xferkit {j} / httpx": "raw httpx" for j in JOURNALS},
    **{f"xferkit {j} / aiohttp": "raw httpx+aiohttp" for j in JOURNALS},
}
NEEDS_BENCH_EXTRA = {"raw aiohttp": "aiohttp", "ccxt": "ccxt"}
NEEDS_FAST_EXTRA = {name for name in CLIENTS if "aiohttp" in name}
RECV_WINDOW_MS = 5000
SIGN_EARLY_MS = 200  # as xferkit does: a timestamp ahead of the venue's clock is refused sooner
MAX_CONNECTIONS = 64  # xferkit's pool size, for the loops that build their own pool
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


def signed_transfer() -> tuple[bytes, dict[str, str]]:
    """One XT transfer body with a fresh bizId, and its signed headers."""
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
    headers = {
        "validate-algorithms": "HmacSHA256",
        "validate-appkey": API_KEY,
        "validate-recvwindow": str(RECV_WINDOW_MS),
        "validate-timestamp": str(timestamp),
        "validate-signature": signature,
        "content-type": "application/json",
    }
    return body.encode(), headers


def check_answer(status: int, raw: bytes) -> None:
    """Raise unless XT's success envelope came back."""
    answer = json.loads(raw)
    if status != 200 or answer.get("mc") != "SUCCESS":
        raise RuntimeError(f"transfer refused: {status} {answer}")


def raw_httpx(
    transport: str,
) -> Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]]:
    """The floor on one transport: sign, POST, parse, check; nothing else."""

    @contextlib.asynccontextmanager
    async def client(url: str, concurrency: int) -> AsyncIterator[Transfer]:
        del concurrency
        # Built exactly as xferkit's Transport builds its own client for that backend.
        http = _httpx_client(_aiohttp_transport() if transport == "aiohttp" else None)
        async with http:

            async def transfer() -> None:
                body, headers = signed_transfer()
                response = await http.post(url + TRANSFER_PATH, content=body, headers=headers)
                check_answer(response.status_code, response.content)

            yield transfer

    return client


@contextlib.asynccontextmanager
async def raw_aiohttp(url: str, concurrency: int) -> AsyncIterator[Transfer]:
    """The floor on aiohttp itself: a ClientSession with xferkit's pool size."""
    import aiohttp  # noqa: PLC0415 - the bench extra

    del concurrency
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def transfer() -> None:
            body, headers = signed_transfer()
            async with session.post(url + TRANSFER_PATH, data=body, headers=headers) as response:
                check_answer(response.status, await response.read())

        yield transfer


def to_fake_xt_headers(request: dict[str, Any]) -> dict[str, Any]:
    """Rename ccxt's ``xt-validate-*`` headers to ``validate-*`` and sign them as the fake checks.

    ccxt signed the ``xt-``-prefixed names, so its signature cannot match; the body, timestamp,
    window and key stay ccxt's.
    """
    headers = dict(request["headers"])
    key = headers.pop("xt-validate-appkey")
    timestamp = int(headers.pop("xt-validate-timestamp"))
    window = int(headers.pop("xt-validate-recvwindow"))
    headers.pop("xt-validate-algorithms")
    headers.pop("xt-validate-signature")
    headers.update(
        {
            "validate-algorithms": "HmacSHA256",
            "validate-appkey": key,
            "validate-recvwindow": str(window),
            "validate-timestamp": str(timestamp),
            "validate-signature": sign(
                api_key=key,
                secret=SECRET,
                method=request["method"],
                path=urlsplit(request["url"]).path,
                timestamp_ms=timestamp,
                recv_window_ms=window,
                body=request["body"],
            ),
        }
    )
    return {**request, "headers": headers}


@contextlib.asynccontextmanager
async def ccxt_xt(url: str, concurrency: int) -> AsyncIterator[Transfer]:
    """ccxt's async XT ``transfer()``, pointed at the fake (see the module docstring)."""
    import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]  # noqa: PLC0415

    del concurrency

    class FakeAddressedXT(ccxt_async.xt):  # type: ignore[misc]
        def sign(  # type: ignore[no-untyped-def]
            self,
            path,
            api=[],  # noqa: B006 - ccxt's own signature
            method="GET",
            params={},  # noqa: B006
        ):
            return to_fake_xt_headers(super().sign(path, api, method, params))

    exchange = FakeAddressedXT(
        {
            "apiKey": API_KEY,
            "secret": SECRET,
            "enableRateLimit": False,  # as xferkit's rows: XT(rate_limit=1e9)
            "urls": {"api": {"spot": url}},
        }
    )
    usdt = {"id": "usdt", "code": "USDT", "precision": 1e-8}
    exchange.markets = {}  # transfer() loads markets when this is None; the fake has none
    exchange.currencies = {"USDT": usdt}
    exchange.currencies_by_id = {"usdt": usdt}
    try:

        async def transfer() -> None:
            result = await exchange.transfer("USDT", 1, "spot", "swap")
            if not result.get("id"):
                raise RuntimeError(f"transfer without an id: {result}")

        yield transfer
    finally:
        await exchange.close()


def xferkit_client(
    make_journal: Callable[[int], contextlib.AbstractAsyncContextManager[xferkit.Journal]],
    transport: str,
) -> Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]]:
    """``Client.transfer()`` with the journal ``make_journal(concurrency)`` yields."""

    @contextlib.asynccontextmanager
    async def client(url: str, concurrency: int) -> AsyncIterator[Transfer]:
        xt = xferkit.XT(API_KEY, SECRET, base_url=url, rate_limit=1e9)
        async with contextlib.AsyncExitStack() as stack:
            http: httpx.AsyncClient | None = None
            if transport == "httpx":
                # Until Client takes transport="httpx": the client backend="httpx" builds.
                http = await stack.enter_async_context(_httpx_client(None))
            journal = await stack.enter_async_context(make_journal(concurrency))
            xfer = await stack.enter_async_context(
                xferkit.Client(xt, journal=journal, http_client=http)
            )
            chosen = xfer._transport.backend if xfer._transport is not None else None
            if chosen != ("caller" if http is not None else "aiohttp"):
                raise RuntimeError(f"{transport} row runs on the {chosen} transport")

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
    """One client at one load, one round (a paced row has ``concurrency`` 0)."""

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
    concurrency: int = 0,
    rate: float = 0.0,
    seconds: float,
    warmup: float,
) -> Row:
    """Warm up, then run ``concurrency`` transfer loops, or start ``rate`` transfers a second.

    A paced row (``rate``) counts each latency from the transfer's scheduled start, not from
    when it got going, so a late start (the client busy, the event loop behind) counts
    against the client.
    """
    async with client(url, concurrency or PACED_POOL) as transfer:
        latencies: list[float] = []

        async def loop(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                began = time.perf_counter()
                await transfer()
                if record:
                    latencies.append(time.perf_counter() - began)

        async def one(scheduled: float, record: bool) -> None:
            await transfer()
            if record:
                latencies.append(time.perf_counter() - scheduled)

        async def drive(began: float, duration: float, record: bool) -> None:
            async with anyio.create_task_group() as tg:
                if not rate:
                    for _ in range(concurrency):
                        tg.start_soon(loop, began + duration, record)
                    return
                for n in range(int(duration * rate)):
                    scheduled = began + n / rate
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay)
                    tg.start_soon(one, scheduled, record)

        await drive(time.perf_counter(), warmup, False)
        server_before, client_before = cpu_seconds(server_pid), time.process_time()
        began = time.perf_counter()
        await drive(began, seconds, True)
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


def rotated(names: list[str], by: int) -> list[str]:
    """``names`` starting at index ``by`` (modulo): each round starts with another client."""
    shift = by % len(names) if names else 0
    return names[shift:] + names[:shift]


def median_rate(
    rows: dict[tuple[str, int], list[Row]], name: str, concurrency: int
) -> float | None:
    """Median throughput of ``name`` at ``concurrency``, if it ran."""
    runs = rows.get((name, concurrency))
    return statistics.median(r.rate for r in runs) if runs else None


def table(
    rows: dict[tuple[str, int], list[Row]], rounds: int, concurrencies: tuple[int, ...]
) -> str:
    """Medians over the rounds, as an aligned text table."""
    header = (
        "client",
        "concurrency",
        "transfers/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "vs ccxt",
        "vs raw",
        "server CPU",
        "client CPU",
    )

    def ratio(rate: float, other: float | None) -> str:
        return f"{rate / other:.2f}x" if other else "-"

    lines = []
    for name in CLIENTS:
        for concurrency in concurrencies:
            runs = rows.get((name, concurrency))
            if not runs:
                continue
            rate = statistics.median(r.rate for r in runs)
            rates = [r.rate for r in runs]
            spread = (max(rates) - min(rates)) / rate if rounds > 1 else 0.0
            baseline = BASELINE.get(name)
            lines.append(
                (
                    name,
                    str(concurrency),
                    f"{rate:,.0f}",
                    f"{100 * spread:.0f}%",
                    f"{statistics.median(r.percentile_ms(0.50) for r in runs):.1f}",
                    f"{statistics.median(r.percentile_ms(0.99) for r in runs):.1f}",
                    ratio(rate, median_rate(rows, "ccxt", concurrency)),
                    ratio(rate, median_rate(rows, baseline, concurrency) if baseline else None),
                    f"{100 * statistics.median(r.server_cpu for r in runs):.0f}%",
                    f"{100 * statistics.median(r.client_cpu for r in runs):.0f}%",
                )
            )
    legend = "vs raw: " + "; ".join(f"{row} / {base}" for row, base in BASELINE.items())
    return aligned(header, lines, legend)


def paced_table(rows: dict[tuple[str, float], list[Row]], rates: tuple[float, ...]) -> str:
    """Medians over the rounds of the paced rows, as an aligned text table."""
    header = ("client", "offered/s", "done/s", "p50 ms", "p99 ms", "p99 vs ccxt", "client CPU")
    lines = []
    for rate in rates:
        ccxt = rows.get(("ccxt", rate))
        ccxt_p99 = statistics.median(r.percentile_ms(0.99) for r in ccxt) if ccxt else None
        for name in CLIENTS:
            runs = rows.get((name, rate))
            if not runs:
                continue
            done = statistics.median(r.rate for r in runs)
            p99 = statistics.median(r.percentile_ms(0.99) for r in runs)
            lines.append(
                (
                    name,
                    f"{rate:,.0f}",
                    f"{done:,.0f}" + (" (behind)" if done < 0.95 * rate else ""),
                    f"{statistics.median(r.percentile_ms(0.50) for r in runs):.1f}",
                    f"{p99:.1f}",
                    f"{p99 / ccxt_p99:.2f}x" if ccxt_p99 else "-",
                    f"{100 * statistics.median(r.client_cpu for r in runs):.0f}%",
                )
            )
    return aligned(header, lines, "latency from each transfer's scheduled start")


def aligned(header: tuple[str, ...], lines: list[tuple[str, ...]], legend: str) -> str:
    """``header`` and ``lines`` as columns (the first left-aligned), then ``legend``."""
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines), legend])


def version(distribution: str) -> str:
    """The installed version of ``distribution``, or "-"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


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


def available_clients(
    args: argparse.Namespace, postgres: bool, schema: str
) -> dict[str, Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]]]:
    """The clients this run measures: those asked for whose extras are installed."""
    journals: dict[str, Callable[[int], contextlib.AbstractAsyncContextManager[xferkit.Journal]]]
    journals = {"memory": memory_journal, "sqlite": sqlite_journal}
    if postgres:
        journals["postgresql"] = postgres_journal(args.dsn, schema)
    clients: dict[str, Callable[[str, int], contextlib.AbstractAsyncContextManager[Transfer]]]
    clients = {
        "raw aiohttp": raw_aiohttp,
        "ccxt": ccxt_xt,
        "raw httpx": raw_httpx("httpx"),
        "raw httpx+aiohttp": raw_httpx("aiohttp"),
    }
    for journal, make in journals.items():
        for transport in TRANSPORTS:
            clients[f"xferkit {journal} / {transport}"] = xferkit_client(make, transport)
    wanted = set(args.only.split(",")) if args.only else set(CLIENTS)
    fast = find_spec("aiohttp") is not None
    for name in list(clients):
        module = NEEDS_BENCH_EXTRA.get(name)
        missing = (module is not None and find_spec(module) is None) or (
            name in NEEDS_FAST_EXTRA and not fast
        )
        if name not in wanted or missing:
            if name in wanted:
                print(f"{name} skipped: pip install -e . --group bench")
            del clients[name]
    return clients


def preload_and_freeze() -> None:
    """Import every client's libraries now, then exempt what exists from garbage collection.

    Importing ccxt adds ~190,000 objects to this process. Left in the collected heap, every
    full collection has to walk them (~50 ms each), and the pause lands in whichever row is
    running: xferkit's p99 at 32 rose from ~46 to ~81 ms with ccxt merely imported.
    ``gc.freeze()`` moves the objects that exist now out of the collector's way, for every row
    alike; objects the rows create are still collected as usual.
    """
    for module in ("aiohttp", "ccxt.async_support", "asyncpg"):
        if find_spec(module.split(".")[0]) is not None:
            importlib.import_module(module)
    gc.collect()
    gc.freeze()


async def main(args: argparse.Namespace) -> None:
    """Run every round and print the table."""
    preload_and_freeze()
    concurrencies = tuple(int(c) for c in args.concurrency.split(",") if c)
    rates = tuple(float(r) for r in args.rates.split(",") if r)
    schema = f"xferkit_bench_{uuid.uuid4().hex[:12]}"
    wants_postgres = not args.only or "postgresql" in args.only
    postgres = wants_postgres and await postgres_reachable(args.dsn)
    clients = available_clients(args, postgres, schema)
    names = [name for name in CLIENTS if name in clients]
    paced_names = [name for name in PACED_CLIENTS if name in clients]
    rows: dict[tuple[str, int], list[Row]] = {}
    paced: dict[tuple[str, float], list[Row]] = {}
    try:
        with fake_xt_server() as (url, pid):
            for round_ in range(args.rounds):
                loads = [(name, c, 0.0) for c in concurrencies for name in rotated(names, round_)]
                loads += [(name, 0, r) for r in rates for name in rotated(paced_names, round_)]
                for name, concurrency, rate in loads:
                    row = await run_row(
                        name,
                        client=clients[name],
                        url=url,
                        server_pid=pid,
                        concurrency=concurrency,
                        rate=rate,
                        seconds=args.seconds,
                        warmup=args.warmup,
                    )
                    if rate:
                        paced.setdefault((name, rate), []).append(row)
                    else:
                        rows.setdefault((name, concurrency), []).append(row)
                    if args.verbose:
                        load = f"at {rate:g}/s" if rate else f"c={concurrency}"
                        print(
                            f"round {round_ + 1} {name} {load}: {row.rate:,.0f}/s, "
                            f"p99 {row.percentile_ms(0.99):.1f} ms",
                            flush=True,
                        )
    finally:
        if postgres:
            await drop_schema(args.dsn, schema)
    versions = ", ".join(f"{name} {version(name)}" for name in ("httpx", "aiohttp", "ccxt"))
    print(
        f"transfer() against the loopback FakeXT (child process): {args.seconds:g} s per row "
        f"after {args.warmup:g} s warm-up; median of {args.rounds} interleaved rounds; "
        f"spread = (max - min) / median throughput; {os.cpu_count()} CPUs; {versions}"
    )
    if concurrencies:
        print(table(rows, args.rounds, concurrencies))
    if paced:
        print(f"\npaced: a transfer started every 1/rate s, {', '.join(paced_names)}")
        print(paced_table(paced, rates))


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
    parser.add_argument(
        "--only", default="", help="comma-separated client names to run (default: all)"
    )
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCY)),
        help="comma-separated concurrencies of the closed-loop rows ('' for none)",
    )
    parser.add_argument(
        "--rates",
        default=",".join(map(str, RATES)),
        help="comma-separated transfers/s of the paced rows ('' for none)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each row as it ends")
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_FLAG]:
        anyio.run(_serve_forever)
    else:
        anyio.run(main, parse_args())
