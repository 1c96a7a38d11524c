"""Each fault kind and the rate limit on FakeHTX: what committed, what the client sees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from xferkit._exceptions import RateLimitError
from xferkit._outcomes import Ambiguous, NotProcessed, Succeeded
from xferkit.testing import FakeHTX, FakeTransport, Fault, FaultPlan, VirtualClock
from xferkit.testing._faults import RETRY_AFTER_SECONDS
from xferkit.testing._htx import FIRST_TRANSFER_ID, TIME_FAILURE
from xferkit.venues.htx import HTX

from .htx_caller import KEY, SECRET, HTXCaller, to_http_response

# fault -> (what httpx raises, or the HTTP status seen; the code if JSON; committed?; reached?)
EXPECTED: dict[Fault, tuple[type[httpx.HTTPError] | int, str | None, bool, bool]] = {
    Fault.CONNECT_REFUSED: (httpx.ConnectError, None, False, False),
    Fault.DROP_BEFORE: (httpx.RemoteProtocolError, None, False, True),
    Fault.DROP_AFTER: (httpx.RemoteProtocolError, None, True, True),
    Fault.ERROR_5XX_BEFORE: (503, None, False, True),
    Fault.ERROR_5XX_AFTER: (500, None, True, True),
    Fault.SLOW_AFTER: (httpx.ReadTimeout, None, True, True),
    Fault.TIMEOUT_CODE_AFTER: (200, "1321", True, True),
    Fault.RATE_LIMIT: (429, None, False, True),
    Fault.CLOCK_SKEW: (200, "api-signature-not-valid", False, True),
}


@pytest.fixture
def fake_htx(clock: VirtualClock, plan: FaultPlan) -> FakeHTX:
    """A fake HTX with the test's fault plan."""
    return FakeHTX(access_key=KEY, secret=SECRET, clock=clock, faults=plan)


@pytest.fixture
async def htx_caller(fake_htx: FakeHTX, clock: VirtualClock) -> AsyncIterator[HTXCaller]:
    """Signs and sends requests to the fake as xferkit's HTX module would."""
    async with httpx.AsyncClient(transport=FakeTransport(fake_htx)) as http:
        yield HTXCaller(http, HTX(KEY, SECRET), clock)


def test_every_fault_kind_has_an_expectation() -> None:
    """The table covers every fault kind, so a new kind cannot go untested."""
    assert set(EXPECTED) == set(Fault)


async def resend_in_server_time(caller: HTXCaller, body: str) -> httpx.Response:
    """Resync with the venue's time endpoint and send ``body`` again, as a naive client would."""
    return await caller.transfer(body, timestamp_ms=await caller.server_time())


@pytest.mark.parametrize("fault", list(Fault))
async def test_fault_behaves_as_specified(
    htx_caller: HTXCaller, fake_htx: FakeHTX, plan: FaultPlan, fault: Fault
) -> None:
    """A forced fault commits or not as its name says, shows the client the right failure and
    is counted; a blind resend then executes again, so a committed fault means two moves."""
    seen, code, committed, reached = EXPECTED[fault]
    plan.force(fault)
    body = htx_caller.body()
    if isinstance(seen, int):
        response = await htx_caller.transfer(body)
        assert response.status_code == seen
        if code is None:
            with pytest.raises(ValueError, match="Expecting value"):
                response.json()
        else:
            answer = response.json()
            assert str(answer.get("code", answer.get("err-code"))) == code
    else:
        with pytest.raises(seen):
            await htx_caller.transfer(body)
    assert len(fake_htx.audit) == int(committed)
    assert [r.fault for r in fake_htx.requests] == ([fault] if reached else [])
    assert plan.injected[fault] == 1
    assert sum(plan.injected.values()) == 1

    resent = (await resend_in_server_time(htx_caller, body)).json()
    assert resent["success"] is True
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", 10) == 1 + committed
    assert len(fake_htx.ledger_rows()) == 1 + committed


async def test_timeout_code_answer(
    htx_caller: HTXCaller, fake_htx: FakeHTX, plan: FaultPlan
) -> None:
    """TIMEOUT_CODE_AFTER commits, then answers 1321 in the new shape without a transfer id."""
    plan.force(Fault.TIMEOUT_CODE_AFTER)
    answer = (await htx_caller.transfer()).json()
    assert answer == {"code": 1321, "data": None, "message": answer["message"], "success": False}
    assert len(fake_htx.audit) == 1


async def test_timeout_code_answer_hides_a_refusal(
    htx_caller: HTXCaller, fake_htx: FakeHTX, plan: FaultPlan
) -> None:
    """The 1321 answer does not tell whether the transfer executed: here it was refused."""
    plan.force(Fault.TIMEOUT_CODE_AFTER)
    answer = (await htx_caller.transfer(htx_caller.body(amount="0.000000001"))).json()
    assert answer["code"] == 1321
    assert fake_htx.audit == ()


async def test_rate_limit_fault_carries_retry_after(htx_caller: HTXCaller, plan: FaultPlan) -> None:
    """A simulated 429 says when to come back in a Retry-After header."""
    plan.force(Fault.RATE_LIMIT)
    response = await htx_caller.transfer()
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


async def test_fault_answers_classify_as_the_venue_table_says(
    htx_caller: HTXCaller, plan: FaultPlan
) -> None:
    """xferkit's HTX module reads each HTTP-level fault answer in the class htx.md gives it."""
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
        response = await htx_caller.transfer()
        outcomes.append(htx_caller.htx.classify_transfer(to_http_response(response)))
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


async def test_clock_skew_moves_the_venue_clock(
    htx_caller: HTXCaller, fake_htx: FakeHTX, plan: FaultPlan
) -> None:
    """CLOCK_SKEW moves the venue's clock by the plan's skew and refuses this request with the
    invalid-submission-time error, even though its timestamp was fine."""
    plan.force(Fault.CLOCK_SKEW)
    answer = (await htx_caller.transfer()).json()
    assert answer["err-msg"] == TIME_FAILURE
    assert fake_htx.skew_ms == plan.skew_ms
    assert await htx_caller.server_time() - htx_caller.now_ms() == plan.skew_ms
    assert fake_htx.audit == ()


async def test_large_skew_refuses_until_the_client_resyncs(clock: VirtualClock) -> None:
    """A skew past HTX's five-minute window keeps refusing local timestamps until the client
    signs with the time from /v1/common/timestamp."""
    plan = FaultPlan(skew_ms=400_000)
    plan.force(Fault.CLOCK_SKEW)
    fake = FakeHTX(access_key=KEY, secret=SECRET, clock=clock, faults=plan)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = HTXCaller(http, HTX(KEY, SECRET), clock)
        assert (await caller.transfer()).json()["err-msg"] == TIME_FAILURE
        assert (await caller.transfer()).json()["err-msg"] == TIME_FAILURE
        assert fake.audit == ()
        assert (await resend_in_server_time(caller, caller.body())).json()["success"]
    assert plan.injected[Fault.CLOCK_SKEW] == 1


async def test_faults_never_strike_other_endpoints(clock: VirtualClock) -> None:
    """With every transfer faulted, the time, accounts and ledger endpoints answer normally
    and draw nothing from the plan."""
    plan = FaultPlan(rate=1.0, seed=5)
    fake = FakeHTX(access_key=KEY, secret=SECRET, clock=clock, faults=plan)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = HTXCaller(http, HTX(KEY, SECRET), clock)
        for _ in range(10):
            assert await caller.server_time() > 0
            assert (await caller.accounts()).json()["status"] == "ok"
            assert (await caller.ledger(accountId=10_000_001))["ok"] is True
    assert sum(plan.injected.values()) == 0
    assert all(r.fault is None for r in fake.requests)


async def test_disabled_plan_lets_everything_through(
    htx_caller: HTXCaller, plan: FaultPlan
) -> None:
    """A plan turned off injects nothing, e.g. for the resume phase of a test."""
    plan.force(Fault.DROP_AFTER)
    plan.enabled = False
    assert (await htx_caller.transfer()).json()["data"] == FIRST_TRANSFER_ID
    assert plan.injected[Fault.DROP_AFTER] == 0


# -- the venue's own rate limit ----------------------------------------------------------------


async def rate_limited_venue(
    clock: VirtualClock, rate_limit: float | None
) -> tuple[FakeHTX, httpx.AsyncClient, HTXCaller]:
    """A fake HTX with ``rate_limit`` and a caller wired to it (close the client after)."""
    fake = FakeHTX(access_key=KEY, secret=SECRET, clock=clock, rate_limit=rate_limit)
    http = httpx.AsyncClient(transport=FakeTransport(fake))
    return fake, http, HTXCaller(http, HTX(KEY, SECRET), clock)


async def test_burst_beyond_the_rate_is_refused(clock: VirtualClock) -> None:
    """At 1 request/s, a burst of three admits one; the others get HTTP 429 in the gateway's
    shape with a Retry-After, are not processed, and are counted."""
    fake, http, caller = await rate_limited_venue(clock, 1.0)
    async with http:
        responses = [await caller.transfer() for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 429, 429]
    assert responses[1].json() == {
        "status": "error",
        "err-code": "base-request-exceed-frequency-limit",
        "err-msg": responses[1].json()["err-msg"],
        "data": None,
    }
    assert responses[1].headers["retry-after"] == "1"
    outcome = caller.htx.classify_transfer(to_http_response(responses[1]))
    assert isinstance(outcome, NotProcessed)
    assert isinstance(outcome.error, RateLimitError)
    assert fake.rate_limited == 2
    assert len(fake.audit) == 1
    assert len(fake.requests) == 3


async def test_window_slides_on_the_venue_clock(clock: VirtualClock) -> None:
    """A request is admitted again exactly one second after the one that filled the window."""
    fake, http, caller = await rate_limited_venue(clock, 1.0)
    async with http:
        assert (await caller.transfer()).status_code == 200
        clock.advance(0.999)
        assert (await caller.transfer()).status_code == 429
        clock.advance(0.001)
        assert (await caller.transfer()).status_code == 200
    assert fake.rate_limited == 1


async def test_paced_client_is_never_limited(clock: VirtualClock) -> None:
    """A client pacing itself at the limit (virtual sleeps) is always admitted, and the request
    times let a test measure the rate it achieved."""
    fake, http, caller = await rate_limited_venue(clock, 2.0)
    async with http:
        for _ in range(10):
            assert (await caller.transfer()).json()["success"]
            await clock.sleep(0.5)
    times = [r.clock_time for r in fake.requests]
    assert (len(times) - 1) / (times[-1] - times[0]) == pytest.approx(2.0)
    assert fake.rate_limited == 0


async def test_fractional_rate_and_no_limit(clock: VirtualClock) -> None:
    """A limit of 2.5/s admits three of a burst; without a limit a burst is all admitted."""
    limited, http, caller = await rate_limited_venue(clock, 2.5)
    async with http:
        statuses = [(await caller.transfer()).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    unlimited, http, caller = await rate_limited_venue(clock, None)
    async with http:
        assert all([(await caller.transfer()).status_code == 200 for _ in range(20)])
    assert (limited.rate_limited, unlimited.rate_limited) == (2, 0)


async def test_rate_limit_spares_other_endpoints(clock: VirtualClock) -> None:
    """Only transfer requests count toward and are refused by the rate limit."""
    fake, http, caller = await rate_limited_venue(clock, 1.0)
    async with http:
        assert (await caller.transfer()).status_code == 200
        for _ in range(5):
            assert await caller.server_time() > 0
            assert (await caller.accounts()).status_code == 200
        assert (await caller.transfer()).status_code == 429
    assert fake.rate_limited == 1


async def test_rate_limit_and_success_classify(clock: VirtualClock) -> None:
    """After waiting out the Retry-After, the same body is admitted and reads as success."""
    fake, http, caller = await rate_limited_venue(clock, 1.0)
    async with http:
        await caller.transfer()
        refused = await caller.transfer()
        await clock.sleep(float(refused.headers["retry-after"]))
        admitted = await caller.transfer()
    outcome = caller.htx.classify_transfer(to_http_response(admitted))
    assert outcome == Succeeded(str(FIRST_TRANSFER_ID + 1))
    assert len(fake.audit) == 2
