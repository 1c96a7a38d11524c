"""Each fault kind on FakeXT: whether it committed, what the client sees, and that it is counted."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from xferkit._http import HttpResponse
from xferkit._outcomes import Ambiguous, NotProcessed
from xferkit.testing import FakeTransport, FakeXT, Fault, FaultPlan, VirtualClock
from xferkit.testing._faults import RETRY_AFTER_SECONDS
from xferkit.venues.xt import XT

from .xt_caller import KEY, SECRET, XTCaller

# fault -> (what httpx raises, or the HTTP status seen; the XT code if JSON; committed?; reached?)
EXPECTED: dict[Fault, tuple[type[httpx.HTTPError] | int, str | None, bool, bool]] = {
    Fault.CONNECT_REFUSED: (httpx.ConnectError, None, False, False),
    Fault.DROP_BEFORE: (httpx.RemoteProtocolError, None, False, True),
    Fault.DROP_AFTER: (httpx.RemoteProtocolError, None, True, True),
    Fault.ERROR_5XX_BEFORE: (503, None, False, True),
    Fault.ERROR_5XX_AFTER: (500, None, True, True),
    Fault.SLOW_AFTER: (httpx.ReadTimeout, None, True, True),
    Fault.TIMEOUT_CODE_AFTER: (200, "TRANSFER_007", True, True),
    Fault.RATE_LIMIT: (429, None, False, True),
    Fault.CLOCK_SKEW: (200, "AUTH_105", False, True),
}


def test_every_fault_kind_has_an_expectation() -> None:
    """The table below covers every fault kind, so a new kind cannot go untested."""
    assert set(EXPECTED) == set(Fault)


async def resend_in_server_time(caller: XTCaller, body: str) -> httpx.Response:
    """Resync with the venue's time endpoint and resend ``body``, as the engine would."""
    offset = await caller.server_time() - caller.now_ms()
    return await caller.transfer(body, timestamp_ms=caller.now_ms() + offset)


@pytest.mark.parametrize("fault", list(Fault))
async def test_fault_behaves_as_specified(
    caller: XTCaller, fake: FakeXT, plan: FaultPlan, fault: Fault
) -> None:
    """A forced fault commits or not as its name says, shows the client the right failure,
    is counted, and a resend of the same bizId then settles to exactly one execution."""
    seen, code, committed, reached = EXPECTED[fault]
    plan.force(fault)
    body = caller.body("biz-fault")
    if isinstance(seen, int):
        response = await caller.transfer(body)
        assert response.status_code == seen
        if code is None:
            assert "mc" not in response.text
            with pytest.raises(ValueError, match="Expecting value"):
                response.json()
        else:
            assert response.json() == {
                "rc": 1,
                "mc": code,
                "ma": [],
                "result": None,
            }
    else:
        with pytest.raises(seen):
            await caller.transfer(body)
    assert len(fake.audit) == int(committed)
    assert [r.fault for r in fake.requests] == ([fault] if reached else [])
    assert plan.injected[fault] == 1
    assert sum(plan.injected.values()) == 1

    answer = (await resend_in_server_time(caller, body)).json()
    assert answer["mc"] == ("TRANSFER_001" if committed else "SUCCESS")
    assert fake.executions_by_token() == {"biz-fault": 1}


async def test_rate_limit_carries_retry_after(caller: XTCaller, plan: FaultPlan) -> None:
    """A simulated 429 says when to come back in a Retry-After header."""
    plan.force(Fault.RATE_LIMIT)
    response = await caller.transfer()
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


async def test_errors_after_commit_alternate_500_and_502(
    caller: XTCaller, fake: FakeXT, plan: FaultPlan
) -> None:
    """ERROR_5XX_AFTER answers 500, then 502, and every one of them committed."""
    plan.force(Fault.ERROR_5XX_AFTER, times=3)
    statuses = [(await caller.transfer(caller.body(f"b{i}"))).status_code for i in range(3)]
    assert statuses == [500, 502, 500]
    assert len(fake.audit) == 3


async def test_answers_classify_as_the_venue_table_says(caller: XTCaller, plan: FaultPlan) -> None:
    """xferkit's XT module reads each HTTP-level fault answer in the class xt.md gives it."""
    kinds = [
        Fault.ERROR_5XX_BEFORE,
        Fault.ERROR_5XX_AFTER,
        Fault.TIMEOUT_CODE_AFTER,
        Fault.RATE_LIMIT,
        Fault.CLOCK_SKEW,
    ]
    outcomes = []
    for fault in kinds:
        plan.force(fault)
        response = await caller.transfer()
        answer = HttpResponse(
            status=response.status_code, headers=dict(response.headers), body=response.content
        )
        outcomes.append(caller.xt.classify_transfer(answer))
    assert [type(o) for o in outcomes] == [
        Ambiguous,
        Ambiguous,
        Ambiguous,
        NotProcessed,
        NotProcessed,
    ]
    rate_limited, skewed = outcomes[3], outcomes[4]
    assert isinstance(rate_limited, NotProcessed)
    assert rate_limited.retry_after == RETRY_AFTER_SECONDS
    assert isinstance(skewed, NotProcessed)
    assert skewed.resync_clock


async def test_clock_skew_refuses_until_the_client_resyncs(
    caller: XTCaller, fake: FakeXT, plan: FaultPlan
) -> None:
    """After CLOCK_SKEW the venue stays skewed: local timestamps keep failing with AUTH_105
    until the client signs with the time from /v4/public/time."""
    plan.force(Fault.CLOCK_SKEW)
    body = caller.body("biz-skew")
    assert (await caller.transfer(body)).json()["mc"] == "AUTH_105"
    assert fake.skew_ms == plan.skew_ms
    assert (await caller.transfer(body)).json()["mc"] == "AUTH_105"
    assert fake.audit == ()

    server_ms = await caller.server_time()
    assert server_ms - caller.now_ms() == plan.skew_ms
    assert (await caller.transfer(body, timestamp_ms=server_ms - 200)).json()["mc"] == "SUCCESS"
    assert plan.injected[Fault.CLOCK_SKEW] == 1


async def test_faults_never_strike_the_time_endpoint(caller: XTCaller, clock: VirtualClock) -> None:
    """With every transfer faulted, the time endpoint still answers and draws nothing."""
    plan = FaultPlan(rate=1.0, seed=5)
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock, faults=plan)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = XTCaller(http, XT(KEY, SECRET), clock)
        for _ in range(20):
            assert await caller.server_time() > 0
    assert sum(plan.injected.values()) == 0


async def test_disabled_plan_lets_everything_through(caller: XTCaller, plan: FaultPlan) -> None:
    """A plan turned off injects nothing, e.g. for the resume phase of a test."""
    plan.force(Fault.DROP_AFTER)
    plan.enabled = False
    assert (await caller.transfer()).json()["mc"] == "SUCCESS"
    assert plan.injected[Fault.DROP_AFTER] == 0


async def run_faulted_batch(seed: int) -> tuple[list[Fault | None], list[str | None]]:
    """Send the same 40 transfers to a fresh fake with a seeded plan; return faults and audit."""
    clock = VirtualClock()
    plan = FaultPlan(rate=0.5, seed=seed)
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock, faults=plan)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = XTCaller(http, XT(KEY, SECRET), clock)
        for i in range(40):
            with contextlib.suppress(httpx.TransportError):
                await resend_in_server_time(caller, caller.body(f"biz-{i}"))
    return [r.fault for r in fake.requests if r.fault is not None], [e.biz_id for e in fake.audit]


async def test_seeded_plan_replays_exactly() -> None:
    """The same seed gives the same faults and the same executions, run after run."""
    first = await run_faulted_batch(seed=11)
    assert first == await run_faulted_batch(seed=11)
    assert first != await run_faulted_batch(seed=12)
    assert len(set(first[0])) > 3
