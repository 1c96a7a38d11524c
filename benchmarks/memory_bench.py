"""Peak memory of a 100k-transfer batch, and the time ``import xferkit`` takes.

Run as ``python benchmarks/memory_bench.py`` (or ``nox -s bench``).

Memory: each configuration runs in a fresh interpreter, so its peak RSS (``ru_maxrss``) is its
own. The child runs ``Client.transfer_many`` over ``--transfers`` requests from a generator,
concurrency 32, ``XT(rate_limit=1e9)``, against an instant in-process fake:

* ``FakeXT``: ``httpx.AsyncClient(transport=FakeTransport(FakeXT(...)))``. The fake keeps every
  request it received and every transfer it executed (its audit), so its own memory grows with
  the batch and is part of the figure.
* ``stub``: an ``httpx.MockTransport`` answering XT's success envelope and keeping nothing:
  what xferkit itself holds.

with ``MemoryJournal`` (which keeps every intent: it grows with the batch by design) or
``SqliteJournal`` (a file under ``--sqlite-dir``: ``/dev/shm`` by default where it exists, to
shorten the run; where the file lives does not change the process's memory, and
transfer_bench.py measures SQLite on disk). Three configurations run by default (FakeXT with
MemoryJournal, the stub with each journal; ``--all`` adds FakeXT with SQLite, the slowest), two
at a time (``--jobs``), so their transfers/s share the CPUs and are indicative only.
``RSS before`` is after imports and client setup, ``RSS at 50%`` and ``at 100%`` are sampled
while the batch runs, ``peak`` is ``ru_maxrss``.

Import time: ``python -X importtime -c "import xferkit"`` in fresh interpreters; the median
over ``--imports`` runs of xferkit's cumulative import time, and of a whole
``python -c "import xferkit"`` minus ``python -c "pass"`` (wall clock). This is a benchmark,
not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import httpx

import xferkit

API_KEY = "bench-key"
SECRET = "bench-secret"  # noqa: S105 - the fake venue's made-up credential
CONCURRENCY = 32
CHILD_FLAG = "--child"
CONFIGS = (("FakeXT", "memory"), ("FakeXT", "sqlite"), ("stub", "memory"), ("stub", "sqlite"))
DEFAULT_CONFIGS = (("FakeXT", "memory"), ("stub", "memory"), ("stub", "sqlite"))
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- one configuration, in a child process -----------------------------------------------------


def current_rss_mb() -> float:
    """This process's resident set now, in MB (Linux)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * PAGE_KB / 1024


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB (``ru_maxrss`` is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def requests(count: int) -> Iterator[xferkit.TransferRequest]:
    """``count`` identical XT transfers (each gets its own generated key)."""
    for _ in range(count):
        yield xferkit.TransferRequest(
            venue="xt", currency="usdt", amount="1", from_account="spot", to_account="usdt_futures"
        )


def stub_transport() -> httpx.MockTransport:
    """Answer every transfer with XT's success envelope (and the time endpoint); keep nothing."""
    ids = itertools.count(226_972_662_307_830_528)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v4/public/time":
            result: object = {"serverTime": int(time.time() * 1000)}
        else:
            result = next(ids)
        body = json.dumps({"rc": 0, "mc": "SUCCESS", "ma": [], "result": result})
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handle)


async def child(venue: str, journal_kind: str, count: int, sqlite_dir: str) -> dict[str, object]:
    """Run the batch; return the figures."""
    from xferkit.testing import FakeTransport, FakeXT  # noqa: PLC0415

    if venue == "FakeXT":
        plenty = {"usdt": Decimal(10) ** 15}
        transport: httpx.AsyncBaseTransport = FakeTransport(
            FakeXT(api_key=API_KEY, secret=SECRET, balances={"SPOT": plenty, "FUTURES_U": plenty})
        )
    else:
        transport = stub_transport()
    with tempfile.TemporaryDirectory(prefix="xferkit-bench-", dir=sqlite_dir) as tmp:
        journal: xferkit.Journal = (
            xferkit.MemoryJournal()
            if journal_kind == "memory"
            else xferkit.SqliteJournal(Path(tmp) / "journal.sqlite3")
        )
        xt = xferkit.XT(API_KEY, SECRET, rate_limit=1e9)
        succeeded = failed = 0
        samples: dict[str, float] = {}
        async with (
            httpx.AsyncClient(transport=transport) as http,
            xferkit.Client(xt, journal=journal, http_client=http) as client,
        ):
            samples["before"] = current_rss_mb()
            began = time.perf_counter()
            outcomes: AsyncIterator[xferkit.Receipt | Exception] = client.transfer_many(
                requests(count), concurrency=CONCURRENCY
            )
            async for outcome in outcomes:
                if isinstance(outcome, xferkit.Receipt):
                    succeeded += 1
                else:
                    failed += 1
                done = succeeded + failed
                if done == count // 2:
                    samples["half"] = current_rss_mb()
            seconds = time.perf_counter() - began
            samples["end"] = current_rss_mb()
    return {
        "succeeded": succeeded,
        "failed": failed,
        "seconds": seconds,
        "rss_before": samples["before"],
        "rss_half": samples.get("half", 0.0),
        "rss_end": samples["end"],
        "peak": peak_rss_mb(),
    }


def run_child(venue: str, journal_kind: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one configuration in a fresh interpreter and read its figures."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [
            sys.executable,
            __file__,
            CHILD_FLAG,
            venue,
            journal_kind,
            str(args.transfers),
            args.sqlite_dir,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{venue}/{journal_kind} failed:\n{result.stderr}")
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


# -- import time ----------------------------------------------------------------------------


def import_times(runs: int) -> tuple[float, float]:
    """Median xferkit cumulative import time (-X importtime) and median extra wall time, in ms."""
    cumulative: list[float] = []
    wall: list[float] = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import xferkit"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in result.stderr.splitlines():
            # Each line: self time (us), cumulative time (us), module name, "|"-separated.
            parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == "xferkit":
                cumulative.append(int(parts[1]) / 1000)
        for code, sink in (("pass", None), ("import xferkit", wall)):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603
            elapsed = (time.perf_counter() - began) * 1000
            if sink is None:
                baseline = elapsed
            else:
                sink.append(elapsed - baseline)
    return statistics.median(cumulative), statistics.median(wall)


def table(rows: list[tuple[str, str, dict[str, object]]]) -> str:
    """The memory rows as an aligned text table."""
    header = (
        "venue",
        "journal",
        "transfers",
        "failed",
        "seconds",
        "transfers/s",
        "RSS before MB",
        "RSS at 50% MB",
        "RSS at 100% MB",
        "peak RSS MB",
    )
    lines = []
    for venue, journal, f in rows:
        done = int(f["succeeded"]) + int(f["failed"])  # type: ignore[call-overload]
        seconds = float(f["seconds"])  # type: ignore[arg-type]
        lines.append(
            (
                venue,
                journal,
                f"{done:,}",
                str(f["failed"]),
                f"{seconds:.0f}",
                f"{done / seconds:,.0f}",
                f"{f['rss_before']:.0f}",
                f"{f['rss_half']:.0f}",
                f"{f['rss_end']:.0f}",
                f"{f['peak']:.0f}",
            )
        )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


def main(args: argparse.Namespace) -> None:
    """Run every configuration and the import timing; print both tables."""
    configs = CONFIGS if args.all else DEFAULT_CONFIGS
    # Children run side by side (peak RSS is per process, so unaffected); their transfers/s
    # then share the CPUs and are indicative only.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_child, venue, journal, args) for venue, journal in configs]
        rows = [
            (venue, journal, future.result())
            for (venue, journal), future in zip(configs, futures, strict=True)
        ]
    print(
        f"transfer_many of {args.transfers:,} XT transfers, concurrency {CONCURRENCY}, in-process "
        f"instant fake, each configuration in a fresh interpreter ({args.jobs} at a time); "
        f"SQLite under {args.sqlite_dir}; httpx {httpx.__version__}"
    )
    print(table(rows))
    cumulative, wall = import_times(args.imports)
    print()
    print(
        f"import xferkit: {cumulative:.0f} ms (-X importtime, cumulative; median of "
        f"{args.imports}); {wall:.0f} ms of wall time over a bare interpreter start (median)"
    )


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=100_000, help="batch size")
    parser.add_argument(
        "--sqlite-dir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir(),  # noqa: S108
        help="where the SqliteJournal file lives (tmpfs by default: memory, not the disk)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="configurations run at once")
    parser.add_argument("--imports", type=int, default=10, help="import-time repetitions")
    parser.add_argument(
        "--all", action="store_true", help="also run FakeXT with SqliteJournal (the slowest)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD_FLAG]:
        venue, journal, count, directory = sys.argv[2:6]
        print(json.dumps(anyio.run(child, venue, journal, int(count), directory)))
    else:
        main(parse_args())
