"""Fixtures for the fake venues' own tests: a virtual clock, a fake XT and a signing caller."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from xferkit.testing import FakeTransport, FakeXT, FaultPlan, VirtualClock
from xferkit.venues.xt import XT

from .xt_caller import KEY, SECRET, XTCaller


@pytest.fixture
def clock() -> VirtualClock:
    """A virtual clock shared by the fake venue and the caller."""
    return VirtualClock()


@pytest.fixture
def plan() -> FaultPlan:
    """A fault plan with no random faults; tests force the ones they need."""
    return FaultPlan()


@pytest.fixture
def fake(clock: VirtualClock, plan: FaultPlan) -> FakeXT:
    """A fake XT with default balances that knows the test-vector key."""
    return FakeXT(api_key=KEY, secret=SECRET, clock=clock, faults=plan)


@pytest.fixture
async def http(fake: FakeXT) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to the fake through the in-process transport."""
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as client:
        yield client


@pytest.fixture
def caller(http: httpx.AsyncClient, clock: VirtualClock) -> XTCaller:
    """Signs and sends requests to the fake as xferkit's XT module would."""
    return XTCaller(http, XT(KEY, SECRET), clock)
