"""Fleets of real processes sharing one PostgreSQL journal: exactly once across all of them.

Each test serves the fake venues from this process (so their audit sees every worker), runs
``python -m tests.fleet.worker`` processes against one schema of its own, and drops the schema
at the end.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.abc
import asyncpg
import attrs
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Intent
from xferkit.testing import FakeHTX, FakeXT, Fault, FaultPlan, serve
from xferkit.venues.htx import DEFAULT_SETTLE_SECONDS, MIN_SETTLE_SECONDS

from ..postgres import drop_schema, require_postgres, unique_schema
from .harness import (
    DatabaseProxy,
    Fleet,
    WorkerRun,
    check_exactly_once,
    executions_of,
    fakes,
    ledger_reads,
    read_journal,
    refused_after_a_possible_execution,
    run_worker,
    run_workers,
    transfer_posts,
    xt_token,
)
from .worker import LEASE_SECONDS, Planned, plan

pytestmark = pytest.mark.slow

SLOW_SECONDS = 0.3  # how long the fakes hold a SLOW_AFTER answer: past the workers' 0.25 s timeout
# Four workers of 16 concurrent transfers would hold 64 of the server's 100 connections with
# pools of 20; pools of 8 (calls queue for a connection) leave room for other test runs.
FLEET_POOL = "8"
NOTHING_SENT = {"JournalError", "LeaseLostError"}  # JournalError and its subclass promise it
TYPED_AFTER_DB_LOSS = {*NOTHING_SENT, "TransferOutcomeUnknownError"}


def venue_error(name: str) -> bool:
    """Whether ``name`` is one of xferkit's definitive venue refusals."""
    cls = getattr(xferkit, name, None)
    return isinstance(cls, type) and issubclass(cls, xferkit.VenueError)


def check_reports_agree(reports: dict[str, WorkerRun], intents: dict[str, Intent]) -> None:
    """Every definitive answer a worker gave for a key is the journal's final one.

    `TransferOutcomeUnknownError` is not a definitive answer and always agrees (see the fleet
    test's docstring), nor is a refusal that left the key unspent (the next call of the key
    tries again); any other error is not an answer a fleet may give.
    """
    problems = []
    for run in reports.values():
        for key, line in run.outcomes.items():
            intent = intents[key]
            error = line.get("error")
            if error is None:
                agrees = intent.status is TransferStatus.SUCCEEDED and (
                    line["status"],
                    line["transfer_id"],
                ) == (intent.status.value, intent.transfer_id)
            elif error == "TransferOutcomeUnknownError":
                agrees = True
            elif venue_error(error) and line.get("key_reusable"):
                # Nothing reached the venue's processing and the key was not spent: another
                # process's call with the same key may try again and settle it any way.
                agrees = True
            elif venue_error(error):
                agrees = (
                    intent.status is TransferStatus.FAILED
                    and intent.error is not None
                    and (intent.error.kind, intent.error.code) == (error, line["code"])
                )
            else:
                agrees = False
            if not agrees:
                problems.append(f"{run.name}: {key} answered {line}; the journal says {intent}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "settings",
    [
        # A trading engine's deadline, shorter than HTX's default settle window.
        ("--deadline", "8", "--settle-seconds", str(DEFAULT_SETTLE_SECONDS)),
        ("--deadline", "20", "--settle-seconds", str(MIN_SETTLE_SECONDS)),
    ],
    ids=["user", "short-settle"],
)
async def test_four_processes_submit_the_same_keys_exactly_once(settings: tuple[str, ...]) -> None:
    """Four processes submit the same 200 keys under faults: each runs once, all agree.

    What a process may answer for a key: the journal's final receipt (the same status and
    transfer id), the journal's stored refusal (the same error class and code), or
    `TransferOutcomeUnknownError`. The last is honest, not a disagreement: it means "maybe",
    and a process gets it when its own drive ran out of attempts while the outcome was
    ambiguous, or when it gave up (its deadline) waiting for another process that was driving
    the key. Another process, or the final run, may then settle the key either way. What no
    process may do is report success or refusal other than the final one.
    """
    dsn = await require_postgres()
    schema = unique_schema()
    seed, keys = 11, 200
    faults = FaultPlan(rate=0.3, seed=seed)
    fake_xt, fake_htx = fakes(faults)
    try:
        async with serve(fake_xt, fake_htx, slow_seconds=SLOW_SECONDS) as server:
            workers = Fleet(dsn=dsn, schema=schema, server=server, seed=seed, keys=keys)
            fleet = await run_workers(
                {
                    f"worker-{n}": workers.command(
                        "submit",
                        "--order-seed",
                        str(n),
                        "--pool-size",
                        FLEET_POOL,
                        "--wait-for-go",
                        *settings,
                    )
                    for n in range(4)
                }
            )
            for run in fleet.values():
                run.check_clean_exit()
                assert len(run.outcomes) == keys, run.name
            faults.enabled = False
            # A call's short deadline can end before an absent HTX transfer's settle window:
            # resume(), which has no call deadline, settles what the fleet left open.
            recovery = await run_worker("resume", workers.command("resume", *settings))
            recovery.check_clean_exit()
            final = await run_worker("final", workers.command("submit", *settings))
            final.check_clean_exit()
        intents = await read_journal(dsn, schema)
    finally:
        await drop_schema(dsn, schema)

    check_exactly_once(plan(seed, keys), intents, fake_xt, fake_htx)
    assert sum(faults.injected.values()) > 50
    check_reports_agree({**fleet, "final": final}, intents)
    # Once the faults stop every transfer settles, but the oversized XT ones refused after a
    # lost answer: those only a person can settle (check_exactly_once checked each of them).
    left_open = [
        p for p in plan(seed, keys) if refused_after_a_possible_execution(p, intents[p.key])
    ]
    assert final.summary_counts.get("TransferOutcomeUnknownError", 0) == len(left_open)
    # The processes really shared the keys: some answered from another process's drive.
    replayed = collections.Counter(
        key for run in fleet.values() for key, line in run.outcomes.items() if line.get("replayed")
    )
    assert len(replayed) > keys // 4


async def test_two_processes_racing_resume_drive_each_intent_once() -> None:
    """Two resume() processes started together: every unresolved intent is driven by one."""
    dsn = await require_postgres()
    schema = unique_schema()
    seed, keys = 12, 60
    # Every transfer request is lost, before or after the venue executes it, and the worker
    # gives up within 0.2 s (HTX's settle window is 10 s): every XT intent is left UNKNOWN,
    # and so is every HTX one but those the ledger shows at once (read before any wait).
    faults = FaultPlan(rate=1.0, kinds=[Fault.DROP_AFTER, Fault.DROP_BEFORE], seed=seed)
    fake_xt, fake_htx = fakes(faults)
    ambiguous = ["--no-oversized", "--max-attempts", "2", "--deadline", "0.2"]
    batch = plan(seed, keys, oversized=False)
    try:
        async with serve(fake_xt, fake_htx, slow_seconds=SLOW_SECONDS) as server:
            workers = Fleet(dsn=dsn, schema=schema, server=server, seed=seed, keys=keys)
            setup = await run_worker("setup", workers.command("submit", *ambiguous))
            setup.check_clean_exit()
            unresolved = await read_journal(dsn, schema)
            executed_before = {p.key for p in batch if executions_of(p, fake_xt, fake_htx)}
            faults.enabled = False
            xt_since, htx_since = len(fake_xt.requests), len(fake_htx.requests)
            racers = await run_workers(
                {
                    name: workers.command("resume", "--wait-for-go")
                    for name in ("resume-a", "resume-b")
                }
            )
        intents = await read_journal(dsn, schema)
    finally:
        await drop_schema(dsn, schema)

    left = {key for key, i in unresolved.items() if i.status is TransferStatus.UNKNOWN}
    for key, line in setup.outcomes.items():
        if key in left:
            assert line["error"] == "TransferOutcomeUnknownError", line
        else:  # settled by the ledger read right after the lost answer, deadline or not
            assert unresolved[key].venue == "htx", line
            assert line["status"] == TransferStatus.SUCCEEDED.value, line
            assert unresolved[key].ledger_ref is not None
    # Both kinds of work were left: transfers that executed and transfers that never did.
    assert 0 < len(executed_before & left) < len(left)
    for run in racers.values():
        run.check_clean_exit()
    drivers: dict[str, list[str]] = collections.defaultdict(list)
    for run in racers.values():
        for receipt in run.receipts:
            assert receipt["status"] == TransferStatus.SUCCEEDED.value, receipt
            if not receipt["replayed"]:
                drivers[receipt["key"]].append(run.name)
    assert {key: names for key, names in drivers.items() if len(names) != 1} == {}
    assert set(drivers) == left
    assert {n for names in drivers.values() for n in names} == set(racers), "no race happened"
    check_exactly_once(batch, intents, fake_xt, fake_htx)
    # At the venues: one resend per XT intent; per HTX intent left open, at most a ledger
    # read at once and one after the settle window (fewer: the lookups of one process share
    # scans, and a window the journal shows is over needs no second read), and a send only
    # for those proved absent.
    xt_posts = transfer_posts(fake_xt, xt_since)
    assert xt_posts == {xt_token(p): 1 for p in batch if p.venue == "xt"}
    htx = [p for p in batch if p.venue == "htx" and p.key in left]
    htx_posts = transfer_posts(fake_htx, htx_since)
    assert htx_posts == {str(p.amount): 1 for p in htx if p.key not in executed_before}
    found_at_once = sum(1 for p in htx if p.key in executed_before)
    reads = ledger_reads(fake_htx, htx_since)
    assert 1 <= reads <= found_at_once + 2 * (len(htx) - found_at_once)


def with_application_name(dsn: str, name: str) -> str:
    """``dsn`` with ``application_name`` set, so the test can find the worker's connections."""
    parts = urlsplit(dsn)
    query = [*parse_qsl(parts.query), ("application_name", name)]
    return urlunsplit(parts._replace(query=urlencode(query)))


Disruptor = Callable[[], Awaitable[int]]


@attrs.frozen(kw_only=True)
class Disrupted:
    """A batch run while its database kept failing, then the runs that finished the work."""

    batch: list[Planned]
    disrupted: WorkerRun
    disruptions: int
    executed_in_run: set[str]
    recovery: list[WorkerRun]
    intents: dict[str, Intent]
    fakes: tuple[FakeXT, FakeHTX]


async def run_disrupted(
    seed: int, worker_dsn: Callable[[str], str], disrupt: Disruptor, pause: float
) -> Disrupted:
    """Submit 200 keys under venue faults and call ``disrupt`` every ``pause`` seconds while
    the worker runs; then, faults off and leases lapsed, resume() and re-submit."""
    dsn = await require_postgres()
    schema = unique_schema()
    keys = 200
    faults = FaultPlan(rate=0.2, seed=seed)
    fake_xt, fake_htx = fakes(faults)
    batch = plan(seed, keys)
    disruptions = 0
    try:
        async with serve(fake_xt, fake_htx, slow_seconds=SLOW_SECONDS) as server:
            workers = Fleet(dsn=dsn, schema=schema, server=server, seed=seed, keys=keys)
            started = anyio.Event()
            result: list[WorkerRun] = []
            async with anyio.create_task_group() as tg:

                async def submit() -> None:
                    command = workers.command("submit", dsn=worker_dsn(dsn))
                    result.append(await run_worker("disrupted", command, started=started))
                    tg.cancel_scope.cancel()  # the disruptions end with the run

                tg.start_soon(submit)
                await started.wait()
                while not result:
                    await anyio.sleep(pause)
                    # Shielded: a disruption the worker's end interrupts still counts, and a
                    # restarted database comes back up.
                    with anyio.CancelScope(shield=True):
                        disruptions += await disrupt()
            executed_in_run = {p.key for p in batch if executions_of(p, fake_xt, fake_htx)}
            faults.enabled = False
            await anyio.sleep(LEASE_SECONDS)  # leases whose release was lost have lapsed
            recovery = [
                await run_worker("resume", workers.command("resume")),
                await run_worker("final", workers.command("submit")),
            ]
        intents = await read_journal(dsn, schema)
    finally:
        await drop_schema(dsn, schema)
    return Disrupted(
        batch=batch,
        disrupted=result[0],
        disruptions=disruptions,
        executed_in_run=executed_in_run,
        recovery=recovery,
        intents=intents,
        fakes=(fake_xt, fake_htx),
    )


def check_disrupted(run: Disrupted) -> None:
    """Nothing ran twice, every answer was true, every error typed, the work got finished."""
    for recovery in run.recovery:
        recovery.check_clean_exit()
    disrupted, intents = run.disrupted, run.intents
    assert disrupted.summary is not None, disrupted.stderr
    assert len(disrupted.outcomes) == len(run.batch)
    assert run.disruptions > 0, "the database was never disrupted"
    answers = collections.Counter(
        str(line.get("error", line.get("status"))) for line in disrupted.outcomes.values()
    )
    assert sum(answers[name] for name in TYPED_AFTER_DB_LOSS) > 0, f"nothing felt it: {answers}"
    # Safety first: nothing ran twice, and what the worker said happened did happen.
    check_exactly_once(run.batch, intents, *run.fakes)
    wrong = [
        f"{key}: {line}"
        for key, line in disrupted.outcomes.items()
        if (key in run.executed_in_run and line.get("error") in NOTHING_SENT)
        or (key in run.executed_in_run and venue_error(line.get("error", "")))
        or ("status" in line and intents[key].status.value != line["status"])
    ]
    assert not wrong, "\n".join(wrong)
    # Then the errors' types: only xferkit's, never a raw database exception.
    disrupted.check_clean_exit()
    unexpected = {
        answer
        for answer in answers
        if answer not in TYPED_AFTER_DB_LOSS
        and answer != TransferStatus.SUCCEEDED.value
        and not venue_error(answer)
    }
    assert not unexpected, answers


async def test_lost_database_connections_mid_batch_are_typed_and_never_double_send() -> None:
    """Killing a worker's database connections mid-batch: typed errors only, no double send.

    Every 0.2 s the test terminates every backend of the worker's pool, found by the
    ``application_name`` the worker's DSN carries, while it submits 200 keys under venue
    faults. The worker must answer each key with a receipt or one of xferkit's errors, and a
    key it reported refused or `JournalError` ("nothing was sent") must not have executed in
    its run. A later resume() and re-submission settle every key exactly once.
    """
    application = f"xferkit-fleet-{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(await require_postgres())

    async def terminate() -> int:
        killed = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = $1",
            application,
        )
        return sum(1 for row in killed if row[0])

    try:
        run = await run_disrupted(
            13, lambda dsn: with_application_name(dsn, application), terminate, pause=0.2
        )
    finally:
        await admin.close()
    check_disrupted(run)


async def test_database_restarts_mid_batch_are_typed_and_never_double_send() -> None:
    """A database that restarts again and again mid-batch: typed errors only, no double send.

    The worker reaches PostgreSQL through a relay the test restarts: every connection is cut
    and new ones are refused for 0.5 s, as during a database restart. The same rules hold as
    for killed connections: typed errors, nothing executed that was reported unsent, and a
    later resume() finishes the work exactly once.
    """
    dsn = await require_postgres()
    proxy = DatabaseProxy(dsn)
    async with anyio.create_task_group() as relay:
        await proxy.start(relay)

        async def restart() -> int:
            await proxy.restart(relay, down_seconds=0.3)
            return 1

        try:
            run = await run_disrupted(14, lambda _: proxy.dsn, restart, pause=0.3)
        finally:
            proxy.stop()
    check_disrupted(run)
