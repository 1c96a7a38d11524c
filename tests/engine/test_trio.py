"""The SDK is anyio-native: the same engine runs under trio, not only asyncio.

Run with ``trio.run`` directly: pytest-asyncio's auto mode would otherwise take over an
anyio-marked test and run it on asyncio.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import trio

import xferkit
from xferkit import TransferStatus
from xferkit.testing import FakeHTX, FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, HTX_ACCESS_KEY, HTX_SECRET, SECRET, htx_id, transfer_args


def test_transfers_with_faults_and_sqlite_run_under_trio(tmp_path: Path) -> None:
    """Under trio: ambiguous answer, resend, one execution, replay; SQLite journal."""
    clock = VirtualClock()
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeXT(api_key=API_KEY, secret=SECRET, clock=clock, faults=plan)
    results: list[xferkit.Receipt] = []

    async def main() -> None:
        async with (
            httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
            xferkit.Client(
                xferkit.XT(API_KEY, SECRET),
                journal=tmp_path / "journal.sqlite3",
                http_client=http_client,
                clock=clock,
            ) as client,
        ):
            results.append(await client.transfer("xt", **transfer_args(), key="k1"))
            results.append(await client.transfer("xt", **transfer_args(), key="k1"))
        import sniffio  # noqa: PLC0415 - proves the backend this ran on

        assert sniffio.current_async_library() == "trio"

    trio.run(main)
    receipt, replay = results
    assert receipt.status is TransferStatus.SUCCEEDED
    assert replay.replayed
    assert list(fake.executions_by_token().values()) == [1]


def test_identical_htx_movements_of_two_clients_take_turns_under_trio(tmp_path: Path) -> None:
    """Under trio, two clients on one SQLite journal: an identical HTX transfer whose first
    answer was lost waits for the other's turn and spacing in the journal; each executes once."""
    clock = VirtualClock()
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, clock=clock, faults=plan)
    path = tmp_path / "journal.sqlite3"
    receipts: dict[str, xferkit.Receipt] = {}

    # No deadline: the waiter polls in virtual seconds while the other client's SQLite writes
    # take real time on worker threads, so on a busy machine any virtual deadline could pass
    # before the other transfer settles (the deadline is not what this test is about).
    retry = xferkit.RetryPolicy(deadline=None)

    async def main() -> None:
        async with (
            httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
            xferkit.Client(
                xferkit.HTX(HTX_ACCESS_KEY, HTX_SECRET),
                journal=path,
                http_client=http_client,
                clock=clock,
                retry=retry,
            ) as first,
            xferkit.Client(
                xferkit.HTX(HTX_ACCESS_KEY, HTX_SECRET),
                journal=path,
                http_client=http_client,
                clock=clock,
                retry=retry,
            ) as second,
        ):

            async def send(client: xferkit.Client, key: str) -> None:
                receipts[key] = await client.transfer(
                    "htx",
                    currency="usdt",
                    amount="25",
                    from_account="spot",
                    to_account="usdt_futures",
                    key=key,
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, first, "x")
                nursery.start_soon(send, second, "y")
        journal = xferkit.SqliteJournal(path)
        await journal.open()
        try:
            stored = {key: await journal.get(htx_id(key)) for key in ("x", "y")}
        finally:
            await journal.aclose()
        sent = sorted((i.first_sent_at, i.last_sent_at) for i in stored.values() if i is not None)
        (_, first_done), (second_sent, _) = sent
        assert first_done is not None
        assert second_sent is not None
        assert (second_sent - first_done).total_seconds() >= 2 * 2.0  # ledger_margin_seconds

    trio.run(main)
    assert {r.status for r in receipts.values()} == {TransferStatus.SUCCEEDED}
    assert fake.executions_matching("spot", "linear-swap", "usdt", Decimal(25)) == 2
