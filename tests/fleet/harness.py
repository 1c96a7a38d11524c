"""What the fleet tests share: the fakes, the worker processes, and the exactly-once audit.

The fake venues live in the test process, served on loopback, so their audit of what really
executed sees every worker. Workers are real processes (``python -m tests.fleet.worker``) that
share one PostgreSQL schema.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import attrs

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Intent
from xferkit.testing import FakeHTX, FakeXT, FaultPlan, LoopbackServer
from xferkit.venues.htx import LEDGER_PATH as HTX_LEDGER_PATH

from .worker import HTX_ACCESS_KEY, HTX_SECRET, XT_API_KEY, XT_SECRET, Planned

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 50.0
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


@attrs.frozen(kw_only=True)
class WorkerRun:
    """One finished worker process: its exit, its JSON lines and its stderr."""

    name: str
    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    seconds: float

    @property
    def outcomes(self) -> dict[str, dict[str, Any]]:
        """Submit mode: the line each key got, by key."""
        return {e["key"]: e for e in self.events if e.get("event") == "outcome"}

    @property
    def receipts(self) -> list[dict[str, Any]]:
        """Resume mode: the receipts ``resume()`` returned."""
        return [e for e in self.events if e.get("event") == "receipt"]

    @property
    def summary(self) -> dict[str, Any] | None:
        """The final ``done`` line, if the worker got that far."""
        done = [e for e in self.events if e.get("event") == "done"]
        return done[-1] if done else None

    @property
    def summary_counts(self) -> dict[str, int]:
        """How many keys got each answer (status or error class), from the summary line."""
        return dict(self.summary["counts"]) if self.summary else {}

    def check_clean_exit(self) -> None:
        """Exit 0, a summary line, no traceback, and every reported error one of xferkit's."""
        untyped = [e for e in self.events if e.get("typed") is False]
        assert not untyped, f"{self.name} reported raw exceptions:\n" + "\n".join(
            str(e.get("detail", e)) for e in untyped
        )
        failed = [e for e in self.events if e.get("event") in ("failed", "resume_failed")]
        assert not failed, f"{self.name} failed: {failed}"
        assert self.returncode == 0, f"{self.name} exited {self.returncode}:\n{self.stderr}"
        assert "Traceback" not in self.stderr, f"{self.name} printed a traceback:\n{self.stderr}"
        assert self.summary is not None, f"{self.name} gave no summary:\n{self.stderr}"


@attrs.frozen(kw_only=True)
class Fleet:
    """Where a test's workers run: one schema, the served fakes, one seeded batch."""

    dsn: str
    schema: str
    server: LoopbackServer
    seed: int
    keys: int

    def command(self, mode: str, *extra: str, dsn: str | None = None) -> list[str]:
        """The command line of one worker (``dsn`` overrides the fleet's, e.g. to tag it)."""
        return [
            sys.executable, "-m", "tests.fleet.worker",
            "--dsn", dsn or self.dsn, "--schema", self.schema,
            "--xt-url", self.server.url("xt"), "--htx-url", self.server.url("htx"),
            "--seed", str(self.seed), "--keys", str(self.keys), "--mode", mode, *extra,
        ]  # fmt: skip


async def run_worker(
    name: str,
    command: Sequence[str],
    *,
    started: anyio.Event | None = None,
    go: anyio.Event | None = None,
) -> WorkerRun:
    """Run one worker to its end; set ``started`` once its client is open.

    With ``go``, the worker must have been given ``--wait-for-go``: it is told to begin (a line
    on its stdin) once ``go`` is set.
    """
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    events: list[dict[str, Any]] = []
    stderr = bytearray()
    begin = time.monotonic()
    process = await anyio.open_process(
        list(command),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdin=subprocess.PIPE if go is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with process:
        assert process.stdout is not None
        assert process.stderr is not None
        stdout_stream, stderr_stream = process.stdout, process.stderr

        async def read_stdout() -> None:
            pending = b""
            async for chunk in stdout_stream:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    events.append(json.loads(line))
                    if started is not None and events[-1].get("event") == "started":
                        started.set()

        async def read_stderr() -> None:
            async for chunk in stderr_stream:
                stderr.extend(chunk)

        waiting_for_go = anyio.CancelScope()

        async def release(go: anyio.Event) -> None:
            with waiting_for_go:
                await go.wait()
                assert process.stdin is not None
                with contextlib.suppress(*_BROKEN):  # it may have died before starting
                    await process.stdin.send(b"go\n")

        try:
            with anyio.fail_after(WORKER_TIMEOUT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_stdout)
                    tg.start_soon(read_stderr)
                    if go is not None:
                        tg.start_soon(release, go)
                    await process.wait()
                    waiting_for_go.cancel()  # it ended without being told to begin
        finally:
            if process.returncode is None:
                process.kill()
            if started is not None:
                started.set()  # it ended (or crashed) without starting: stop waiting
    assert process.returncode is not None
    return WorkerRun(
        name=name,
        returncode=process.returncode,
        events=events,
        stderr=stderr.decode(errors="replace"),
        seconds=time.monotonic() - begin,
    )


async def run_workers(commands: dict[str, Sequence[str]]) -> dict[str, WorkerRun]:
    """Run workers started with ``--wait-for-go`` together: all begin once all have opened."""
    runs: dict[str, WorkerRun] = {}
    started = {name: anyio.Event() for name in commands}
    go = anyio.Event()

    async def one(name: str, command: Sequence[str]) -> None:
        runs[name] = await run_worker(name, command, started=started[name], go=go)

    async with anyio.create_task_group() as tg:
        for name, command in commands.items():
            tg.start_soon(one, name, command)
        for event in started.values():
            await event.wait()
        go.set()
    return runs


async def read_journal(dsn: str, schema: str) -> dict[str, Intent]:
    """Every intent in the schema, by key."""
    journal = xferkit.PostgresJournal(dsn, schema=schema)
    await journal.open()
    try:
        return {intent.key: intent for intent in await journal.list()}
    finally:
        await journal.aclose()


def xt_token(planned: Planned) -> str:
    """The bizId XT sees for ``planned`` (its key and parameters)."""
    return xferkit.XT(XT_API_KEY, XT_SECRET).biz_id(
        planned.key,
        currency=planned.currency,
        amount=planned.amount,
        from_account=planned.from_account,
        to_account=planned.to_account,
    )


def executions_of(planned: Planned, fake_xt: FakeXT, fake_htx: FakeHTX) -> int:
    """How many times the venue really executed this key's transfer."""
    if planned.venue == "xt":
        return fake_xt.executions_by_token()[xt_token(planned)]
    return fake_htx.executions_matching(
        planned.from_account, planned.to_account, planned.currency, planned.amount
    )


def refused_after_a_possible_execution(planned: Planned, intent: Intent) -> bool:
    """An oversized XT transfer left open: an earlier attempt may have executed, and the
    balance refusal of the resend says nothing about it (XT may check the balance first)."""
    return (
        planned.venue == "xt"
        and planned.oversized
        and intent.status is TransferStatus.UNKNOWN
        and intent.error is not None
        and intent.error.code == "FUND_002"
    )


def check_exactly_once(
    batch: Sequence[Planned], intents: dict[str, Intent], fake_xt: FakeXT, fake_htx: FakeHTX
) -> None:
    """Every key settled: SUCCEEDED executed once, FAILED never, the oversized ones FAILED,
    or UNKNOWN with the refusal as the reason when an earlier attempt may have executed.

    Other keys may end FAILED too: a transfer whose every attempt provably never reached the
    venue (connect timeouts, 503s, 429s under load) is refused by the retry policy.
    """
    assert set(intents) == {p.key for p in batch}
    problems = []
    for planned in batch:
        intent = intents[planned.key]
        count = executions_of(planned, fake_xt, fake_htx)
        expected = {TransferStatus.SUCCEEDED: 1, TransferStatus.FAILED: 0}.get(intent.status)
        if refused_after_a_possible_execution(planned, intent):
            expected = min(count, 1)  # open, honestly: it moved at most once
        if count != expected or (planned.oversized and intent.status is TransferStatus.SUCCEEDED):
            problems.append(
                f"{planned.key} ({planned.amount} {planned.from_account}->{planned.to_account}): "
                f"journal {intent.status.value} (transfer_id {intent.transfer_id}, attempts "
                f"{intent.attempts}, ledger_ref {intent.ledger_ref}), executed {count} times"
            )
    assert not problems, "\n".join(problems)
    assert all(n == 1 for n in fake_xt.executions_by_token().values()), "an XT bizId ran twice"
    succeeded = collections.Counter(
        i.venue for i in intents.values() if i.status is TransferStatus.SUCCEEDED
    )
    assert len(fake_xt.audit) == succeeded["xt"]
    assert len(fake_htx.audit) == succeeded["htx"]


def fakes(faults: FaultPlan | None) -> tuple[FakeXT, FakeHTX]:
    """A fake XT and HTX with the workers' credentials, sharing one fault plan."""
    return (
        FakeXT(api_key=XT_API_KEY, secret=XT_SECRET, faults=faults),
        FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, faults=faults),
    )


def transfer_posts(fake: FakeXT | FakeHTX, since: int = 0) -> collections.Counter[str]:
    """Transfer POSTs that reached ``fake`` from request number ``since`` on: by XT bizId, or
    by HTX amount (unique per key in these batches)."""
    counts: collections.Counter[str] = collections.Counter()
    for received in fake.requests[since:]:
        request = received.request
        if request.method != "POST":
            continue
        fields = json.loads(request.body, parse_float=Decimal)
        counts[fields["bizId"] if isinstance(fake, FakeXT) else str(Decimal(fields["amount"]))] += 1
    return counts


def ledger_reads(fake: FakeHTX, since: int = 0) -> int:
    """Ledger pages HTX served from request number ``since`` on."""
    return sum(1 for r in fake.requests[since:] if r.request.path == HTX_LEDGER_PATH)


class DatabaseProxy:
    """A TCP relay in front of PostgreSQL that a test can restart, as a database restart looks.

    `restart` drops every relayed connection and refuses new ones for a while (nothing
    listens on the port), then listens again on the same port.
    """

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._dsn = parts
        self.port = 0
        self._scope: anyio.CancelScope | None = None

    @property
    def dsn(self) -> str:
        """The DSN that reaches the database through this relay."""
        user = self._dsn.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(self._dsn._replace(netloc=netloc))

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Listen (on the same port as before, after a restart) and relay until stopped."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio
        scope = anyio.CancelScope()
        self._scope = scope

        async def serve() -> None:
            with scope:
                async with listener:
                    await listener.serve(self._relay)

        task_group.start_soon(serve)

    def stop(self) -> None:
        """Stop listening and cut every relayed connection."""
        if self._scope is not None:
            self._scope.cancel()

    async def restart(self, task_group: anyio.abc.TaskGroup, down_seconds: float) -> None:
        """Go down for ``down_seconds`` (connections cut, new ones refused), then come back."""
        self.stop()
        await anyio.sleep(down_seconds)
        await self.start(task_group)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp(*self._target)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:

                async def pipe(
                    source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream
                ) -> None:
                    with contextlib.suppress(*_BROKEN):
                        async for chunk in source:
                            await sink.send(chunk)
                    tg.cancel_scope.cancel()

                tg.start_soon(pipe, client, upstream)
                tg.start_soon(pipe, upstream, client)
