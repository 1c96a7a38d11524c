"""FakeTransport: routing by host, concurrency without lost or doubled transfers, and trio."""

from __future__ import annotations

from decimal import Decimal

import anyio
import httpx
import pytest
import sniffio
import trio

from xferkit.testing import FakeTransport, FakeXT, SimRequest, SimResponse, VirtualClock
from xferkit.testing._sim import ReceivedRequest
from xferkit.venues.xt import XT

from .xt_caller import KEY, SECRET, XTCaller


async def test_unknown_host_is_a_connect_error(caller: XTCaller, fake: FakeXT) -> None:
    """A host no fake answers on fails like an unreachable host, and reaches no venue."""
    with pytest.raises(httpx.ConnectError):
        await caller.http.get("https://api.huobi.pro/v1/common/timestamp")
    assert fake.requests == ()


async def test_routes_by_host(clock: VirtualClock) -> None:
    """Two venues on one transport each get only the requests sent to their host."""
    main = FakeXT(api_key=KEY, secret=SECRET, clock=clock)
    other = FakeXT(api_key="other-key", secret="other-secret", clock=clock, host="xt.example")
    async with httpx.AsyncClient(transport=FakeTransport(main, other)) as http:
        to_main = XTCaller(http, XT(KEY, SECRET), clock)
        to_other = XTCaller(
            http, XT("other-key", "other-secret", base_url="https://xt.example"), clock
        )
        assert (await to_main.transfer(to_main.body("m"))).json()["mc"] == "SUCCESS"
        assert (await to_other.transfer(to_other.body("o"))).json()["mc"] == "SUCCESS"
    assert [e.biz_id for e in main.audit] == ["m"]
    assert [e.biz_id for e in other.audit] == ["o"]


def test_hosts_must_differ() -> None:
    """Two venues on the same host would make routing ambiguous, so it is refused."""
    first = FakeXT(api_key=KEY, secret=SECRET)
    second = FakeXT(api_key=KEY, secret=SECRET)
    with pytest.raises(ValueError, match=r"sapi\.xt\.com"):
        FakeTransport(first, second)


async def test_request_reaches_the_venue_unchanged(caller: XTCaller) -> None:
    """Method, path, raw query, lower-cased headers and body bytes arrive as sent."""
    seen: list[SimRequest] = []

    class Echo:
        name = "echo"
        host = "echo.test"
        requests: tuple[ReceivedRequest, ...] = ()

        def handle(self, request: SimRequest) -> SimResponse:
            seen.append(request)
            return SimResponse(status=201, headers={"x-echo": "1"}, body=b"raw")

    async with httpx.AsyncClient(transport=FakeTransport(Echo())) as http:
        response = await http.post(
            "https://echo.test/a%20b/c?z=1&a=%2F", headers={"X-Thing": "Yes"}, content=b'{"k":1}'
        )
    assert (response.status_code, response.headers["x-echo"], response.content) == (
        201,
        "1",
        b"raw",
    )
    [request] = seen
    assert (request.method, request.path, request.query) == ("POST", "/a%20b/c", "z=1&a=%2F")
    assert request.headers["x-thing"] == "Yes"
    assert request.body == b'{"k":1}'


async def test_concurrent_transfers_all_execute_once(caller: XTCaller, fake: FakeXT) -> None:
    """Many concurrent transfers with distinct bizIds each execute exactly once."""
    async with anyio.create_task_group() as tasks:
        for i in range(100):
            tasks.start_soon(caller.transfer, caller.body(f"biz-{i}", amount="1"))
    assert len(fake.audit) == 100
    assert set(fake.executions_by_token().values()) == {1}
    assert fake.balance("SPOT", "usdt") == Decimal("999900")


async def test_concurrent_same_biz_id_executes_once(caller: XTCaller, fake: FakeXT) -> None:
    """Racing resends of one bizId: one succeeds, the rest are TRANSFER_001, one execution."""
    codes: list[str] = []

    async def send() -> None:
        codes.append((await caller.transfer(caller.body("same"))).json()["mc"])

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(send)
    assert sorted(codes) == ["SUCCESS"] + ["TRANSFER_001"] * 19
    assert fake.executions_by_token() == {"same": 1}


def test_works_under_trio() -> None:
    """The in-process transport and the virtual clock run under trio as well as asyncio."""
    clock = VirtualClock()
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock)

    async def main() -> list[str]:
        assert sniffio.current_async_library() == "trio"
        async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
            caller = XTCaller(http, XT(KEY, SECRET), clock)
            codes = []
            async with anyio.create_task_group() as tasks:
                for i in range(5):
                    tasks.start_soon(caller.transfer, caller.body(f"t{i}"))
            await clock.sleep(30)
            for i in range(5):
                codes.append((await caller.transfer(caller.body(f"t{i}"))).json()["mc"])
            return codes

    assert trio.run(main) == ["TRANSFER_001"] * 5
    assert len(fake.audit) == 5
    assert clock.monotonic() == 30
