"""The SDK is anyio-native: the same engine runs under trio, not only asyncio.

Run with ``trio.run`` directly: pytest-asyncio's auto mode would otherwise take over an
anyio-marked test and run it on asyncio.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

import xferkit
from xferkit import TransferStatus
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, transfer_args


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
