"""The SDK is anyio-native: the same engine runs under trio."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import xferkit
from xferkit import TransferStatus
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

from .conftest import API_KEY, SECRET, transfer_args


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_transfers_with_faults_and_sqlite_run_on_every_backend(
    anyio_backend: str, tmp_path: Path
) -> None:
    """Under trio and asyncio alike: ambiguous answer, resend, one execution, replay."""
    clock = VirtualClock()
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeXT(api_key=API_KEY, secret=SECRET, clock=clock, faults=plan)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.XT(API_KEY, SECRET),
            journal=tmp_path / "journal.sqlite3",
            http_client=http_client,
            clock=clock,
        ) as client,
    ):
        receipt = await client.transfer("xt", **transfer_args(), key="k1")
        replay = await client.transfer("xt", **transfer_args(), key="k1")
    assert receipt.status is TransferStatus.SUCCEEDED
    assert replay.replayed
    assert list(fake.executions_by_token().values()) == [1]
