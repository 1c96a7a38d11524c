"""FakeHTX over the loopback server: the Host header is 127.0.0.1:PORT and is signed."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest

from xferkit._clock import SYSTEM_CLOCK
from xferkit.testing import FakeHTX, FakeXT, Fault, FaultPlan, serve
from xferkit.testing._htx import SIGNATURE_FAILURE
from xferkit.venues.htx import HTX

from .htx_caller import KEY, SECRET, HTXCaller, to_http_response


@pytest.fixture
def plan() -> FaultPlan:
    """Faults for the served venue; tests force what they need."""
    return FaultPlan()


@pytest.fixture
def served(plan: FaultPlan) -> FakeHTX:
    """A fake HTX on the real clock, since a real client signs with real time."""
    return FakeHTX(access_key=KEY, secret=SECRET, faults=plan)


def caller_for(http: httpx.AsyncClient, url: str) -> HTXCaller:
    """A caller whose HTX signs for ``url``, the server's base URL."""
    return HTXCaller(http, HTX(KEY, SECRET, base_url=url), SYSTEM_CLOCK)


async def test_signed_requests_over_tcp(served: FakeHTX) -> None:
    """HTX(base_url=server.url("htx")) signs over 127.0.0.1:PORT, which is the Host header
    the venue sees: the transfer, the accounts list and the ledger all verify."""
    async with serve(served) as server, httpx.AsyncClient() as http:
        url = server.url("htx")
        assert url == server.url("api.huobi.pro")
        assert url.startswith("http://127.0.0.1:")
        caller = caller_for(http, url)
        transfer = await caller.transfer(caller.body(amount=Decimal("2.5")))
        account = caller.htx.parse_spot_account_id(to_http_response(await caller.accounts()))
        now_ms = served.server_time_ms()
        ledger = await caller.send(
            caller.htx.ledger_request(
                account_id=account,
                currency="usdt",
                start_ms=now_ms - 60_000,
                end_ms=now_ms + 1,
                from_id=None,
                timestamp_ms=caller.now_ms(),
            )
        )
    assert transfer.json()["success"] is True
    page = caller.htx.parse_ledger(to_http_response(ledger))
    assert [row.amount for row in page.rows] == [Decimal("-2.5")]
    hosts = {r.request.headers["host"] for r in served.requests}
    assert hosts == {url.removeprefix("http://")}


async def test_signature_over_another_host_fails_over_tcp(served: FakeHTX) -> None:
    """A request signed for api.huobi.pro but sent to the loopback port fails verification."""
    async with serve(served) as server, httpx.AsyncClient() as http:
        elsewhere = HTX(KEY, SECRET, base_url="http://api.huobi.pro")
        request = elsewhere.transfer_request(HTXCaller.body(), int(time.time() * 1000))
        url = request.url.replace("http://api.huobi.pro", server.url("htx"))
        response = await http.post(url, content=request.body, headers=dict(request.headers))
    assert response.json()["err-msg"] == SIGNATURE_FAILURE
    assert served.audit == ()


async def test_served_beside_xt(served: FakeHTX) -> None:
    """One server serves FakeHTX and FakeXT on their own ports."""
    xt = FakeXT(api_key="k", secret="s")
    async with serve(served, xt) as server:
        assert server.url("htx") != server.url("xt")


async def test_slow_after_commit_over_tcp(served: FakeHTX, plan: FaultPlan) -> None:
    """SLOW_AFTER holds the answer past a short client timeout although the transfer executed;
    a resend then executes again (HTX has no de-duplication)."""
    plan.force(Fault.SLOW_AFTER)
    async with serve(served, slow_seconds=0.2) as server:
        # Only the read is short: a connect slowed by a busy machine must not time out.
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.05)) as impatient:
            caller = caller_for(impatient, server.url("htx"))
            with pytest.raises(httpx.ReadTimeout):
                await caller.transfer()
        assert len(served.audit) == 1
        async with httpx.AsyncClient(timeout=5.0) as patient:
            caller = caller_for(patient, server.url("htx"))
            assert (await caller.transfer()).json()["success"] is True
    assert served.executions_matching("spot", "linear-swap", "usdt", 10) == 2
