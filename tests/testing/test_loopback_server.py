"""The loopback server: the same fakes over real TCP and HTTP/1.1, faults included."""

from __future__ import annotations

import socket
import time

import anyio
import h11
import httpx
import pytest
import trio

from xferkit._clock import SYSTEM_CLOCK
from xferkit.testing import FakeXT, Fault, FaultPlan, serve
from xferkit.venues.xt import XT

from .xt_caller import KEY, SECRET, XTCaller


@pytest.fixture
def plan() -> FaultPlan:
    """Faults for the served venue; tests force what they need."""
    return FaultPlan()


@pytest.fixture
def served(plan: FaultPlan) -> FakeXT:
    """A fake XT on the real clock, since a real client signs with real time."""
    return FakeXT(api_key=KEY, secret=SECRET, faults=plan)


def caller_for(http: httpx.AsyncClient, url: str) -> XTCaller:
    return XTCaller(http, XT(KEY, SECRET, base_url=url), SYSTEM_CLOCK)


async def test_signed_transfer_over_tcp(served: FakeXT) -> None:
    """A signed transfer to the loopback URL executes, and keep-alive serves the next request."""
    async with serve(served) as server, httpx.AsyncClient() as http:
        assert server.url("xt") == server.url("sapi.xt.com") == server.urls["sapi.xt.com"]
        assert server.url("xt").startswith("http://127.0.0.1:")
        caller = caller_for(http, server.url("xt"))
        first = await caller.transfer(caller.body("tcp-1"))
        second = await caller.transfer(caller.body("tcp-1"))
        assert await caller.server_time() > 0
    assert first.json()["mc"] == "SUCCESS"
    assert second.json()["mc"] == "TRANSFER_001"
    assert served.executions_by_token() == {"tcp-1": 1}
    hosts = {r.request.headers["host"] for r in served.requests}
    assert hosts == {server.url("xt").removeprefix("http://")}


async def test_keeps_connections_alive(served: FakeXT) -> None:
    """Two requests on one TCP connection are both answered (HTTP/1.1 keep-alive)."""
    async with serve(served) as server:
        port = int(server.url("xt").rsplit(":", 1)[1])
        client = h11.Connection(h11.CLIENT)
        statuses = []
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            for _ in range(2):
                request = h11.Request(
                    method="GET", target="/v4/public/time", headers=[("host", "x")]
                )
                await stream.send(client.send(request) + client.send(h11.EndOfMessage()))
                event = client.next_event()
                while not isinstance(event, h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive())
                    elif isinstance(event, h11.Response):
                        statuses.append(event.status_code)
                    event = client.next_event()
                client.start_next_cycle()
    assert statuses == [200, 200]
    assert len(served.requests) == 2


async def test_drop_after_commit_over_tcp(served: FakeXT, plan: FaultPlan) -> None:
    """DROP_AFTER closes the socket unanswered: the client sees an httpx error, the audit the
    execution, and a resend on a fresh connection is answered as a duplicate."""
    plan.force(Fault.DROP_AFTER)
    async with serve(served) as server, httpx.AsyncClient() as http:
        caller = caller_for(http, server.url("xt"))
        with pytest.raises(httpx.RemoteProtocolError):
            await caller.transfer(caller.body("tcp-drop"))
        assert [e.biz_id for e in served.audit] == ["tcp-drop"]
        resent = await caller.transfer(caller.body("tcp-drop"))
    assert resent.json()["mc"] == "TRANSFER_001"
    assert len(served.requests) == 2  # httpx did not silently retry the dropped request


async def test_refuse_over_tcp_reaches_nothing(served: FakeXT, plan: FaultPlan) -> None:
    """CONNECT_REFUSED resets the connection unanswered; nothing is recorded or executed."""
    plan.force(Fault.CONNECT_REFUSED)
    async with serve(served) as server, httpx.AsyncClient() as http:
        caller = caller_for(http, server.url("xt"))
        with pytest.raises(httpx.TransportError):
            await caller.transfer(caller.body("tcp-refused"))
    assert served.requests == ()
    assert served.audit == ()


async def test_slow_after_commit_answers_after_the_timeout(served: FakeXT, plan: FaultPlan) -> None:
    """SLOW_AFTER holds the answer past a short client timeout (ReadTimeout, but executed),
    and a patient client gets the real answer once slow_seconds have passed."""
    plan.force(Fault.SLOW_AFTER, times=2)
    async with serve(served, slow_seconds=0.2) as server:
        # Only the read is short: a connect slowed by a busy machine must not time out.
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.05)) as impatient:
            caller = caller_for(impatient, server.url("xt"))
            with pytest.raises(httpx.ReadTimeout):
                await caller.transfer(caller.body("tcp-slow-1"))
        assert [e.biz_id for e in served.audit] == ["tcp-slow-1"]
        async with httpx.AsyncClient(timeout=5.0) as patient:
            caller = caller_for(patient, server.url("xt"))
            started = time.monotonic()
            answer = await caller.transfer(caller.body("tcp-slow-2"))
            assert time.monotonic() - started >= 0.2
    assert answer.json()["mc"] == "SUCCESS"
    assert len(served.audit) == 2


async def test_error_pages_over_tcp(served: FakeXT, plan: FaultPlan) -> None:
    """HTTP-level faults arrive as the same statuses and headers over TCP."""
    plan.force(Fault.RATE_LIMIT)
    plan.force(Fault.ERROR_5XX_AFTER)
    async with serve(served) as server, httpx.AsyncClient() as http:
        caller = caller_for(http, server.url("xt"))
        limited = await caller.transfer(caller.body("a"))
        failed = await caller.transfer(caller.body("b"))
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    assert failed.status_code == 500
    assert [e.biz_id for e in served.audit] == ["b"]


async def test_serves_several_venues_on_their_own_ports(plan: FaultPlan) -> None:
    """Each venue gets its own port, and requests are routed by port, not by Host."""
    first = FakeXT(api_key=KEY, secret=SECRET)
    second = FakeXT(api_key="k2", secret="s2", host="xt.example")
    async with serve(first, second) as server, httpx.AsyncClient() as http:
        assert server.urls["sapi.xt.com"] != server.urls["xt.example"]
        other = XTCaller(http, XT("k2", "s2", base_url=server.urls["xt.example"]), SYSTEM_CLOCK)
        assert (await other.transfer(other.body("two"))).json()["mc"] == "SUCCESS"
    assert first.audit == ()
    assert [e.biz_id for e in second.audit] == ["two"]


async def test_unknown_venue_name(served: FakeXT) -> None:
    """Asking for a venue that is not served is a KeyError naming it."""
    async with serve(served) as server:
        with pytest.raises(KeyError, match="htx"):
            server.url("htx")


async def test_nothing_listens_after_exit(served: FakeXT) -> None:
    """Leaving the context stops the server: its port refuses connections."""
    async with serve(served) as server:
        url = server.url("xt")
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url + "/v4/public/time")


def test_serves_under_trio(served: FakeXT) -> None:
    """The loopback server and a real httpx client also run under trio."""

    async def main() -> str:
        async with serve(served) as server, httpx.AsyncClient() as http:
            caller = caller_for(http, server.url("xt"))
            answer = await caller.transfer(caller.body("trio-tcp"))
            code: str = answer.json()["mc"]
            return code

    assert trio.run(main) == "SUCCESS"
    assert served.executions_by_token() == {"trio-tcp": 1}


async def test_errors_in_the_block_propagate_unwrapped(served: FakeXT) -> None:
    """An exception raised inside ``serve()`` reaches the caller as itself, not in a group."""
    with pytest.raises(LookupError, match="from the block"):
        async with serve(served):
            raise LookupError("from the block")


async def test_outer_cancellation_stops_the_server(served: FakeXT) -> None:
    """Cancelling the code around ``serve()`` ends the block and the server's tasks."""
    with anyio.CancelScope() as scope:
        async with serve(served):
            scope.cancel()
            await anyio.sleep(10)
    assert scope.cancelled_caught


async def test_serve_binds_the_ports_and_loopback_host_asked_for() -> None:
    """serve() listens on a requested port, and refuses a host that is not loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    fake = FakeXT(api_key="k", secret="s")
    async with serve(fake, ports={"xt": free}) as server:
        assert server.url("xt") == f"http://127.0.0.1:{free}"
    with pytest.raises(ValueError, match="not a loopback address"):
        async with serve(fake, host="10.0.0.1"):
            pass
