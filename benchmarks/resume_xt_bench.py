"""XT recovery speed: ``Client.resume()`` of open intents against a clean forward batch.

Run as ``python benchmarks/resume_xt_bench.py`` (or ``nox -s bench``). A `FakeXT` served on
loopback (``xferkit.testing.serve``) in a child process, with a `FaultPlan` that drops the
connection after committing every transfer request while it is switched on (the parent
switches it through the child's stdin). The clients use ``XT(rate_limit=1e9)`` (the limiter
never waits) and a `SqliteJournal` in a temporary directory (``--sqlite-dir``).

Speed, ``--rounds`` interleaved rounds, each of:

1. forward: a fresh client runs ``--intents`` transfers (distinct keys) through
   ``transfer_many(concurrency=32)``, faults off, on a journal of its own: wall time.
2. setup (not timed): faults on; another client runs as many transfers with
   ``RetryPolicy(max_attempts=1)``: each executes at the venue and its answer is lost, so it
   ends ``UNKNOWN`` in the journal. Faults off.
3. resume: a fresh client on that journal runs ``resume(concurrency=32)``: wall time, from
   entering the client (journal open, clock sync) to the last receipt. Every resend is
   answered with XT's duplicate code, which settles the intent ``SUCCEEDED``.

The table shows each round and the median; ``resume / forward`` is the ratio the issue's
target bounds (at most 1.0). The venue's audit is checked: each intent executed once.

Scale, one row per ``--scale`` size (10,000 and 100,000 by default), each in a fresh child
interpreter so that its peak RSS (``ru_maxrss``) is its own: the journal is seeded with that
many ``IN_FLIGHT`` intents (as a crash mid-send leaves them, their requests never received),
by `Journal.claim` calls made in the seeding process; a fresh client in the measuring process
resumes them all (concurrency 32, faults off, so each resend executes). Reported: RSS after
opening the client, peak RSS during the sweep, wall time and time per intent. This is a
benchmark, not a test: nothing is asserted beyond the exactly-once check.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import anyio
import attrs

import xferkit

API_KEY = "bench-key"
SECRET = "bench-secret"  # noqa: S105 - the fake venue's made-up credential
CONCURRENCY = 32
SERVE_FLAG = "--serve-fake-xt"
SCALE_FLAG = "--scale-child"
SEED_FLAG = "--seed-child"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- the fake venue, in a child process ---------------------------------------------------------


async def _serve_until_stdin_closes() -> None:
    """Serve a FakeXT; ``on``/``off`` lines on stdin switch drop-after-commit faults; EOF stops
    it, after printing how many times each bizId executed (the most, and how many executed)."""
    from xferkit.testing import FakeXT, Fault, FaultPlan, serve  # noqa: PLC0415 - child only

    plenty = {"usdt": Decimal(10) ** 15}
    plan = FaultPlan(rate=1.0, kinds=[Fault.DROP_AFTER])
    plan.enabled = False
    fake = FakeXT(
        api_key=API_KEY,
        secret=SECRET,
        balances={"SPOT": plenty, "FUTURES_U": plenty},
        faults=plan,
    )
    async with serve(fake) as server:
        print(server.url("xt"), flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            plan.enabled = line.strip() == "on"
            print("ok", flush=True)
    counts = fake.executions_by_token()
    report = {"executed": len(counts), "most": max(counts.values(), default=0)}
    print(json.dumps(report), flush=True)


class FakeServer:
    """The child process serving the fake: its URL, fault switch and final report."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, SERVE_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._child.stdout is not None
        self.url = self._child.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"the fake server did not start (it printed {self.url!r})")
        self.report: dict[str, int] = {}

    def faults(self, on: bool) -> None:
        """Switch drop-after-commit faults on or off (answered once the child has)."""
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.write("on\n" if on else "off\n")
        self._child.stdin.flush()
        self._child.stdout.readline()

    def close(self) -> None:
        """Stop the child and read its report."""
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.close()
        self.report = json.loads(self._child.stdout.readline())
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


@contextlib.contextmanager
def fake_xt_server() -> Iterator[FakeServer]:
    """Run the fake in a child process."""
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


# -- speed ----------------------------------------------------------------------------------


def requests(count: int, prefix: str) -> Iterator[xferkit.TransferRequest]:
    """``count`` keyed spot-to-futures transfers."""
    for n in range(count):
        yield xferkit.TransferRequest(
            venue="xt",
            currency="usdt",
            amount="1",
            from_account="spot",
            to_account="usdt_futures",
            key=f"{prefix}-{n}",
        )


def xt_venue(url: str) -> xferkit.XT:
    """The bench's XT credentials against the fake, unthrottled."""
    return xferkit.XT(API_KEY, SECRET, base_url=url, rate_limit=1e9)


async def forward(url: str, journal: Path, count: int, prefix: str) -> float:
    """A clean batch of ``count`` transfers: its wall time."""
    began = time.perf_counter()
    failed = []
    async with xferkit.Client(xt_venue(url), journal=journal) as client:
        async for outcome in client.transfer_many(requests(count, prefix), concurrency=CONCURRENCY):
            if not isinstance(outcome, xferkit.Receipt):
                failed.append(outcome)
    wall = time.perf_counter() - began
    if failed:
        raise RuntimeError(f"{len(failed)} clean transfers failed, e.g. {failed[0]!r}")
    return wall


async def leave_open(server: FakeServer, journal: Path, count: int, prefix: str) -> None:
    """``count`` transfers that execute and lose their answer: ``UNKNOWN`` in ``journal``."""
    server.faults(on=True)
    policy = xferkit.RetryPolicy(max_attempts=1)
    unexpected = []
    async with xferkit.Client(xt_venue(server.url), journal=journal, retry=policy) as client:
        async for outcome in client.transfer_many(requests(count, prefix), concurrency=CONCURRENCY):
            if not isinstance(outcome, xferkit.TransferOutcomeUnknownError):
                unexpected.append(outcome)
    server.faults(on=False)
    if unexpected:
        raise RuntimeError(f"{len(unexpected)} answers were not lost, e.g. {unexpected[0]!r}")


async def resume(url: str, journal: Path, count: int) -> float:
    """A fresh client resumes the journal: its wall time."""
    began = time.perf_counter()
    async with xferkit.Client(xt_venue(url), journal=journal) as client:
        receipts = await client.resume(concurrency=CONCURRENCY)
    wall = time.perf_counter() - began
    settled = sum(r.status is xferkit.TransferStatus.SUCCEEDED for r in receipts)
    if settled != count:
        raise RuntimeError(f"resume settled {settled} of {count}")
    return wall


@attrs.frozen
class Round:
    """One speed round: wall and client CPU seconds of each phase."""

    forward_s: float
    forward_cpu: float
    resume_s: float
    resume_cpu: float

    @property
    def ratio(self) -> float:
        """resume / forward, wall time."""
        return self.resume_s / self.forward_s


async def timed(phase: Awaitable[float]) -> tuple[float, float]:
    """``phase``'s wall time (as it reports it) and this process's CPU seconds meanwhile."""
    cpu = time.process_time()
    wall = await phase
    return wall, time.process_time() - cpu


async def speed(args: argparse.Namespace) -> None:
    """Interleaved rounds of forward and resume; print each and the median ratio.

    Odd rounds run forward first, even rounds resume first, so that a slow spell of a shared
    machine does not always land on the same phase.
    """
    rows: list[Round] = []
    with (
        fake_xt_server() as server,
        tempfile.TemporaryDirectory(prefix="xferkit-bench-", dir=args.sqlite_dir) as tmp,
    ):
        for n in range(args.rounds):
            ahead_journal = Path(tmp) / f"forward-{n}.sqlite3"
            journal = Path(tmp) / f"resume-{n}.sqlite3"
            await leave_open(server, journal, args.intents, f"r{n}")
            if n % 2 == 0:
                ahead = await timed(forward(server.url, ahead_journal, args.intents, f"f{n}"))
                back = await timed(resume(server.url, journal, args.intents))
            else:
                back = await timed(resume(server.url, journal, args.intents))
                ahead = await timed(forward(server.url, ahead_journal, args.intents, f"f{n}"))
            rows.append(Round(*ahead, *back))
    if server.report["most"] != 1:
        raise RuntimeError(f"a transfer executed more than once: {server.report}")
    print(
        f"{args.intents} XT intents, concurrency {CONCURRENCY}, SqliteJournal, loopback FakeXT "
        f"(child process), {os.cpu_count()} CPUs; each executed once ({server.report})"
    )
    header = ("round", "forward s", "forward CPU s", "resume s", "resume CPU s", "resume/forward")
    print("  ".join(f"{h:>14}" for h in header))
    for n, r in enumerate(rows, 1):
        cells = (r.forward_s, r.forward_cpu, r.resume_s, r.resume_cpu, r.ratio)
        print(f"{n:>14}  " + "  ".join(f"{c:>14.2f}" for c in cells))
    medians = [
        statistics.median(getattr(r, name) for r in rows)
        for name in ("forward_s", "forward_cpu", "resume_s", "resume_cpu", "ratio")
    ]
    print(f"{'median':>14}  " + "  ".join(f"{c:>14.2f}" for c in medians))


# -- scale ----------------------------------------------------------------------------------


def current_rss_mb() -> float:
    """This process's resident set now, in MB (Linux)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * PAGE_KB / 1024


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB (``ru_maxrss`` is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def seed(journal_path: Path, url: str, count: int) -> None:
    """Record ``count`` IN_FLIGHT intents, as a crash mid-send leaves them (leases expired)."""
    from xferkit.journal import Intent  # noqa: PLC0415
    from xferkit.venues._base import fingerprint  # noqa: PLC0415

    venue = xt_venue(url)
    journal = xferkit.SqliteJournal(journal_path)
    await journal.open()
    try:
        spec = venue.validate(
            currency="usdt",
            amount="1",
            from_account="spot",
            to_account="usdt_futures",
            symbol=None,
            margin_account=None,
        )
        params = spec.canonical_json()
        params_fingerprint = fingerprint(params)
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        limit = anyio.Semaphore(512)

        async def claim(n: int) -> None:
            async with limit:
                key = f"s-{n:07d}"
                now = start + timedelta(milliseconds=n)  # one every ms, as a batch leaves them
                token = venue.idempotency_token(key, params_fingerprint)
                intent = Intent(
                    key=key,
                    venue=venue.name,
                    account=venue.account,
                    fingerprint=params_fingerprint,
                    params=params,
                    token=token,
                    body=venue.transfer_body(spec, token),
                    created_at=now,
                    status=xferkit.TransferStatus.IN_FLIGHT,
                    attempts=1,
                    first_sent_at=now,
                    last_sent_at=now,
                )
                # lease_seconds ~0: the lease is expired when resume() comes.
                await journal.claim(intent, owner="crashed", lease_seconds=1e-6)

        async with anyio.create_task_group() as tasks:
            for n in range(count):
                await limit.acquire()
                limit.release()
                tasks.start_soon(claim, n)
    finally:
        await journal.aclose()


def receipts_mb(receipts: list[xferkit.Receipt]) -> float:
    """What the returned list of receipts holds, in MB: the list, each receipt, and each of
    its field values not shared with another (``sys.getsizeof``, one level deep)."""
    seen: set[int] = set()
    total = sys.getsizeof(receipts)
    for receipt in receipts:
        total += sys.getsizeof(receipt)
        for value in attrs.astuple(receipt, recurse=False):
            if id(value) not in seen and not isinstance(value, enum.Enum | bool | None):
                seen.add(id(value))
                total += sys.getsizeof(value)
    return total / 2**20


async def scale_child(url: str, journal: Path, count: int) -> None:
    """Resume ``count`` seeded intents; print RSS and time as JSON."""
    began = time.perf_counter()
    async with xferkit.Client(xt_venue(url), journal=journal) as client:
        opened = current_rss_mb()
        receipts = await client.resume(concurrency=CONCURRENCY)
    wall = time.perf_counter() - began
    settled = sum(r.status is xferkit.TransferStatus.SUCCEEDED for r in receipts)
    print(
        json.dumps(
            {
                "intents": count,
                "settled": settled,
                "rss_open_mb": opened,
                "peak_mb": peak_rss_mb(),
                "receipts_mb": receipts_mb(receipts),
                "wall": wall,
            }
        ),
        flush=True,
    )


async def scale(args: argparse.Namespace) -> None:
    """One fresh interpreter per size: peak RSS and time of a resume sweep."""
    results = []
    with (
        fake_xt_server() as server,
        tempfile.TemporaryDirectory(prefix="xferkit-bench-", dir=args.sqlite_dir) as tmp,
    ):
        for count in args.scale:
            journal = Path(tmp) / f"scale-{count}.sqlite3"
            await anyio.run_process(
                [sys.executable, __file__, SEED_FLAG, server.url, str(journal), str(count)]
            )
            done = await anyio.run_process(
                [sys.executable, __file__, SCALE_FLAG, server.url, str(journal), str(count)]
            )
            results.append(json.loads(done.stdout.decode().splitlines()[-1]))
    print(
        "resume() of N seeded IN_FLIGHT XT intents (seeded by another process), concurrency "
        f"{CONCURRENCY}, a fresh interpreter for each N"
    )
    header = (
        "intents",
        "settled",
        "RSS open MB",
        "peak MB",
        "receipts MB",
        "peak-rcpt MB",
        "wall s",
        "µs/intent",
    )
    print("  ".join(f"{h:>12}" for h in header))
    for r in results:
        print(
            f"{r['intents']:>12}  {r['settled']:>12}  {r['rss_open_mb']:>12.1f}  "
            f"{r['peak_mb']:>12.1f}  {r['receipts_mb']:>12.1f}  "
            f"{r['peak_mb'] - r['receipts_mb']:>12.1f}  {r['wall']:>12.1f}  "
            f"{1e6 * r['wall'] / r['intents']:>12.0f}"
        )


async def main(args: argparse.Namespace) -> None:
    """Speed rounds, then the scale rows."""
    if args.rounds:
        await speed(args)
    if args.scale:
        await scale(args)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=3000, help="intents per speed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument(
        "--scale",
        type=int,
        nargs="*",
        default=[10_000, 100_000],
        help="sizes of the memory/time rows (none to skip)",
    )
    parser.add_argument("--sqlite-dir", default=tempfile.gettempdir(), help="where SQLite writes")
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[1:2] == [SERVE_FLAG]:
        anyio.run(_serve_until_stdin_closes)
    elif sys.argv[1:2] == [SEED_FLAG]:
        anyio.run(seed, Path(sys.argv[3]), sys.argv[2], int(sys.argv[4]))
    elif sys.argv[1:2] == [SCALE_FLAG]:
        anyio.run(scale_child, sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        anyio.run(main, parse_args())
