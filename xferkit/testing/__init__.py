"""Simulated venues for testing code that uses xferkit, shipped in the package like moto.

A fake venue checks signatures, clock windows and business rules the way the real venue does,
moves balances between accounts, injects faults on demand and keeps an audit of what really
executed, so a test can assert that every transfer ran exactly once::

    import httpx
    import xferkit
    from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock

    clock = VirtualClock()
    plan = FaultPlan(rate=0.3, seed=7)
    plan.force(Fault.DROP_AFTER)  # the first transfer executes, then its answer is lost
    fake_xt = FakeXT(api_key="key", secret="secret", clock=clock, faults=plan)

    xt = xferkit.XT(api_key="key", secret="secret")  # the default base_url routes to the fake
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake_xt)) as http_client,
        xferkit.Client(
            xt, journal=xferkit.MemoryJournal(clock=clock), http_client=http_client, clock=clock
        ) as client,
    ):
        await client.transfer(
            "xt", currency="usdt", amount="10", from_account="spot", to_account="usdt_futures"
        )

    assert list(fake_xt.executions_by_token().values()) == [1]

For real sockets, ``async with serve(fake_xt) as server:`` listens on loopback and
``server.url("xt")`` is the base URL to give ``xferkit.XT(..., base_url=...)``.

`FakeHTX` does the same for HTX, with no de-duplication (a resend really moves money twice)
and a spot-account ledger to reconcile against; ``FakeHTX.executions_matching(...)`` counts
how often a movement executed.

Faults strike only transfer endpoints, never the time endpoint, so a client can always resync.
"""

from __future__ import annotations

from ._clock import VirtualClock
from ._faults import Fault, FaultPlan
from ._htx import FakeHTX, HTXLedgerRow
from ._server import LoopbackServer, serve
from ._sim import (
    Drop,
    Execution,
    FakeVenue,
    ReceivedRequest,
    Refuse,
    SimAction,
    SimRequest,
    SimResponse,
    Slow,
)
from ._transport import FakeTransport
from ._xt import FakeXT

__all__ = [
    "Drop",
    "Execution",
    "FakeHTX",
    "FakeTransport",
    "FakeVenue",
    "FakeXT",
    "Fault",
    "FaultPlan",
    "HTXLedgerRow",
    "LoopbackServer",
    "ReceivedRequest",
    "Refuse",
    "SimAction",
    "SimRequest",
    "SimResponse",
    "Slow",
    "VirtualClock",
    "serve",
]
