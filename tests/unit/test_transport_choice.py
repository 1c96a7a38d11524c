"""Which transport runs under httpx, and how each sorts failures into "never sent" or "may have"."""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from importlib.util import find_spec

import anyio
import httpx
import pytest
import trio
from anyio.abc import SocketAttribute, SocketStream

import xferkit
from xferkit._http import HttpRequest
from xferkit._transport import (
    DEFAULT_LIMITS,
    SendError,
    Transport,
    _classify,
)
from xferkit.testing import FakeXT, serve

needs_fast = pytest.mark.skipif(
    find_spec("aiohttp") is None, reason="needs the fast extra (aiohttp)"
)
needs_httpx_aiohttp = pytest.mark.skipif(
    find_spec("httpx_aiohttp") is None, reason="needs httpx-aiohttp (the dev extra)"
)

API_KEY = "choice-key"
SECRET = "choice-secret"
BODY = b'{"bizId":"b-1","from":"SPOT","to":"FUTURES_U","currency":"usdt","amount":"1"}'


def underlying(transport: Transport) -> httpx.AsyncBaseTransport:
    """The httpx transport under a `Transport`'s client."""
    return transport._client._transport


def post(port: int) -> HttpRequest:
    return HttpRequest(
        method="POST",
        url=f"http://127.0.0.1:{port}/v4/balance/transfer",
        headers={"content-type": "application/json"},
        body=BODY,
    )


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables change the default and where loopback requests go: none here."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# -- choosing -----------------------------------------------------------------------------------


@needs_fast
async def test_auto_picks_aiohttp_on_asyncio() -> None:
    """With the fast extra installed and asyncio running, the default is the aiohttp transport."""
    from xferkit._aiohttp import AiohttpTransport  # noqa: PLC0415

    transport = Transport()
    try:
        assert transport.backend == "aiohttp"
        assert isinstance(underlying(transport), AiohttpTransport)
    finally:
        await transport.aclose()


def test_auto_picks_httpx_under_trio() -> None:
    """Under trio, where aiohttp cannot run, the default is httpx's own transport."""

    async def main() -> None:
        trio.lowlevel.current_task()  # raises unless this really runs under trio
        transport = Transport()
        try:
            assert transport.backend == "httpx"
            assert isinstance(underlying(transport), httpx.AsyncHTTPTransport)
        finally:
            await transport.aclose()

    # trio.run, not anyio's pytest marker: with pytest-asyncio in auto mode that marker's
    # trio runs still get an asyncio loop.
    trio.run(main)


def test_explicit_aiohttp_under_trio_is_refused() -> None:
    """Asking for aiohttp under trio fails at once, naming the alternative."""

    async def main() -> None:
        trio.lowlevel.current_task()
        with pytest.raises(xferkit.InvalidRequestError, match="only under asyncio"):
            Transport(backend="aiohttp")

    trio.run(main)


def test_auto_outside_an_event_loop_picks_httpx() -> None:
    """Built with no event loop running, the default is httpx's own transport."""
    transport = Transport()
    assert transport.backend == "httpx"
    anyio.run(transport.aclose)


async def test_auto_without_the_fast_extra_picks_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aiohttp importable, the default falls back to httpx's own transport."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # makes the import fail
    transport = Transport()
    try:
        assert transport.backend == "httpx"
        assert isinstance(underlying(transport), httpx.AsyncHTTPTransport)
    finally:
        await transport.aclose()


async def test_explicit_aiohttp_without_the_fast_extra_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asking for aiohttp without the extra fails at once, naming the extra to install."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(xferkit.InvalidRequestError, match=r"xferkit\[fast\]"):
        Transport(backend="aiohttp")


@needs_fast
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
async def test_auto_with_a_proxy_in_the_environment_picks_httpx(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A proxy named in the environment sends the default to httpx, which honours it."""
    monkeypatch.setenv(variable, "http://proxy.invalid:3128")
    transport = Transport()
    try:
        assert transport.backend == "httpx"
    finally:
        await transport.aclose()


@needs_fast
async def test_explicit_aiohttp_with_a_proxy_in_the_environment_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """backend="aiohttp" is kept when a proxy is set; its session does not read the environment."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    transport = Transport(backend="aiohttp")
    try:
        assert transport.backend == "aiohttp"
    finally:
        await transport.aclose()


async def test_explicit_httpx_is_honoured() -> None:
    """backend="httpx" uses httpx's own transport even where aiohttp is available."""
    transport = Transport(backend="httpx")
    try:
        assert transport.backend == "httpx"
        assert isinstance(underlying(transport), httpx.AsyncHTTPTransport)
    finally:
        await transport.aclose()


@needs_fast
async def test_explicit_aiohttp_is_honoured_with_explicit_limits() -> None:
    """backend="aiohttp" builds an aiohttp session with the same pool cap and expiry as httpx."""
    from xferkit._aiohttp import AiohttpTransport  # noqa: PLC0415

    transport = Transport(backend="aiohttp")
    try:
        assert transport.backend == "aiohttp"
        aio = underlying(transport)
        assert isinstance(aio, AiohttpTransport)
        session = aio.session
        connector = session.connector
        assert connector is not None
        assert connector.limit == DEFAULT_LIMITS.max_connections
        assert connector.limit_per_host == 0
        assert session.timeout.total is None
        assert session.timeout.sock_read is not None
        # trust_env would read ~/.netrc in a worker thread on every request.
        assert session.trust_env is False
    finally:
        await transport.aclose()
    assert session.closed


def test_unknown_backend_is_refused() -> None:
    """A backend name other than auto, httpx or aiohttp is refused."""
    with pytest.raises(xferkit.InvalidRequestError, match="backend must be"):
        Transport(backend="requests")  # type: ignore[arg-type]


async def test_callers_client_is_used_as_given_and_left_open() -> None:
    """A caller's httpx client carries the request, whatever is installed, and stays open."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"rc": 0})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        transport = Transport(http)
        assert transport.backend == "caller"
        response = await transport.send(post(1), timeout=5)
        await transport.aclose()
        assert not http.is_closed
    assert response.status == 200
    assert len(seen) == 1
    assert seen[0].content == BODY


async def test_callers_client_with_a_backend_is_refused() -> None:
    """Naming a backend and passing a client at once is refused: the client is used as given."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(xferkit.InvalidRequestError, match="used as given"):
            Transport(http, backend="httpx")


@needs_fast
async def test_client_transfers_over_aiohttp_by_default() -> None:
    """Client opens on the aiohttp transport by default and settles a transfer over loopback."""
    plenty = {"usdt": Decimal(1000)}
    fake = FakeXT(api_key=API_KEY, secret=SECRET, balances={"SPOT": plenty})
    async with serve(fake) as server:
        xt = xferkit.XT(API_KEY, SECRET, base_url=server.url("xt"))
        async with xferkit.Client(xt, journal=xferkit.MemoryJournal()) as client:
            assert client._transport is not None
            assert client._transport.backend == "aiohttp"
            receipt = await client.transfer(
                "xt", currency="usdt", amount=1, from_account="spot", to_account="usdt_futures"
            )
    assert receipt.status is xferkit.TransferStatus.SUCCEEDED
    assert len(fake.audit) == 1


def test_client_transfers_over_httpx_under_trio() -> None:
    """Under trio, Client opens on httpx's own transport and settles a transfer over loopback."""
    plenty = {"usdt": Decimal(1000)}
    fake = FakeXT(api_key=API_KEY, secret=SECRET, balances={"SPOT": plenty})

    async def main() -> xferkit.Receipt:
        trio.lowlevel.current_task()
        async with serve(fake) as server:
            xt = xferkit.XT(API_KEY, SECRET, base_url=server.url("xt"))
            async with xferkit.Client(xt, journal=xferkit.MemoryJournal()) as client:
                assert client._transport is not None
                assert client._transport.backend == "httpx"
                return await client.transfer(
                    "xt", currency="usdt", amount=1, from_account="spot", to_account="usdt_futures"
                )

    receipt = trio.run(main)
    assert receipt.status is xferkit.TransferStatus.SUCCEEDED
    assert len(fake.audit) == 1


# -- failures over real sockets -----------------------------------------------------------------


async def read_request(stream: SocketStream) -> None:
    """Read one whole HTTP/1.1 request (head and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive()
    assert body == BODY


async def close_after_reading(stream: SocketStream) -> None:
    await read_request(stream)


async def reset_after_reading(stream: SocketStream) -> None:
    await read_request(stream)
    raw = stream.extra(SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def never_answer(stream: SocketStream) -> None:
    await read_request(stream)
    await anyio.sleep(30)


async def answer_garbage(stream: SocketStream) -> None:
    await read_request(stream)
    await stream.send(b"HELLO THERE\r\n\r\n")


@contextlib.asynccontextmanager
async def tcp_server(behave: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    """Serve ``behave`` on a loopback port; yield the port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def handle(stream: SocketStream) -> None:
        async with stream:
            await behave(stream)

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, handle)
        try:
            yield listener.extra(SocketAttribute.local_port)  # noqa: S610 - anyio
        finally:
            tasks.cancel_scope.cancel()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


BACKENDS = [
    pytest.param("httpx", id="httpx"),
    pytest.param("aiohttp", id="aiohttp", marks=needs_fast),
    # httpx-aiohttp misnames "sent" failures; a caller's client on it must still be judged right.
    pytest.param("caller-aiohttp", id="callers-aiohttp-client", marks=needs_httpx_aiohttp),
]


@contextlib.asynccontextmanager
async def transport_for(backend: str) -> AsyncIterator[Transport]:
    """A `Transport` on ``backend``; ``caller-aiohttp`` is a caller's client on httpx-aiohttp."""
    if backend == "caller-aiohttp":
        from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415

        async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
            yield Transport(http)
        return
    transport = Transport(backend=backend)  # type: ignore[arg-type]
    try:
        yield transport
    finally:
        await transport.aclose()


async def failure(backend: str, port: int, *, seconds: float = 5.0) -> SendError:
    async with transport_for(backend) as transport:
        with pytest.raises(SendError) as excinfo:
            await transport.send(post(port), timeout=seconds)
    return excinfo.value


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connection_refused_is_not_sent(backend: str) -> None:
    """A refused connection (closed port) is reported as never sent."""
    error = await failure(backend, closed_port())
    assert error.sent is False


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "behave",
    [
        pytest.param(close_after_reading, id="closes-after-reading"),
        pytest.param(reset_after_reading, id="resets-after-reading"),
        pytest.param(answer_garbage, id="malformed-answer"),
    ],
)
async def test_failure_after_the_request_arrived_is_sent(
    backend: str, behave: Callable[[SocketStream], Awaitable[None]]
) -> None:
    """A server that read the whole request and then failed to answer: it may have arrived."""
    async with tcp_server(behave) as port:
        error = await failure(backend, port)
    assert error.sent is True


@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_timeout_is_sent_and_bounded(backend: str) -> None:
    """No answer within the timeout: may have arrived, and the send gives up on time."""
    async with tcp_server(never_answer) as port:
        began = time.monotonic()
        error = await failure(backend, port, seconds=0.3)
        elapsed = time.monotonic() - began
    assert error.sent is True
    assert elapsed < 3


# -- what goes out and what comes back ---------------------------------------------------------

OWN_BACKENDS = [
    pytest.param("httpx", id="httpx"),
    pytest.param("aiohttp", id="aiohttp", marks=needs_fast),
]
SIGNED_QUERY = "AccessKeyId=k&Timestamp=2026-11-21T10%3A00%3A00&Signature=a%2Bb%2F%3D"
GZIPPED_ANSWER = gzip.compress(b'{"status":"ok"}')


async def answer_gzipped(stream: SocketStream, heads: list[bytes]) -> None:
    """Record the request (head and body), then answer with a gzipped body and a repeated
    header."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < len(BODY):
        data += await stream.receive()
    heads.append(data)
    await stream.send(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nX-Note: a\r\nX-Note: b\r\n"
        + f"Content-Length: {len(GZIPPED_ANSWER)}\r\n\r\n".encode()
        + GZIPPED_ANSWER
    )


@pytest.mark.parametrize("backend", OWN_BACKENDS)
async def test_request_goes_out_as_signed_and_the_answer_is_read_alike(backend: str) -> None:
    """Each backend sends the signed query and body byte for byte with the client's headers
    (aiohttp would re-quote ``%3A`` to ``:`` if left to itself), and reads the answer the same
    way: lower-cased names, repeated headers joined, a gzipped body decoded."""
    heads: list[bytes] = []
    async with tcp_server(lambda stream: answer_gzipped(stream, heads)) as port:
        request = HttpRequest(
            method="POST",
            url=f"http://127.0.0.1:{port}/v2/account/transfer?{SIGNED_QUERY}",
            headers={"content-type": "application/json"},
            body=BODY,
        )
        async with transport_for(backend) as transport:
            response = await transport.send(request, timeout=5)
    (received,) = heads
    head, _, body = received.partition(b"\r\n\r\n")
    assert body == BODY
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert request_line == f"POST /v2/account/transfer?{SIGNED_QUERY} HTTP/1.1"
    sent = {
        n.lower(): v.strip() for n, _, v in (line.partition(":") for line in header_lines if line)
    }
    assert sent["user-agent"] == "xferkit/0.1"
    assert sent["content-type"] == "application/json"
    assert sent["content-length"] == str(len(BODY))
    assert response.status == 200
    assert response.headers["x-note"] == "a, b"
    assert response.json() == {"status": "ok"}


# -- the classification table -------------------------------------------------------------------


def wrapped(httpx_error: type[httpx.HTTPError], cause: Exception) -> httpx.HTTPError:
    """An httpx error raised ``from`` ``cause``, as httpx-aiohttp raises them."""
    try:
        raise httpx_error("mapped") from cause
    except httpx.HTTPError as exc:
        return exc


@needs_fast
def test_aiohttp_causes_decide_not_their_httpx_names() -> None:
    """httpx-aiohttp's ConnectTimeout for a disconnect after sending still counts as sent."""
    import aiohttp  # noqa: PLC0415

    key = aiohttp.client_reqrep.ConnectionKey("venue.test", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    cases: list[tuple[Exception, bool]] = [
        (wrapped(httpx.ConnectTimeout, aiohttp.ServerDisconnectedError()), True),
        (wrapped(httpx.ConnectTimeout, aiohttp.ClientOSError(104, "reset")), True),
        (wrapped(httpx.ReadTimeout, aiohttp.SocketTimeoutError("read")), True),
        (wrapped(httpx.TimeoutException, aiohttp.ServerTimeoutError("timeout")), True),
        (wrapped(httpx.ReadError, aiohttp.ClientPayloadError("cut")), True),
        (wrapped(httpx.ConnectTimeout, aiohttp.ConnectionTimeoutError("connect")), False),
        (wrapped(httpx.ConnectTimeout, refused), False),
        (wrapped(httpx.ConnectError, refused), False),
        (wrapped(httpx.UnsupportedProtocol, aiohttp.InvalidURL("ftp://x")), False),
        (aiohttp.ServerDisconnectedError(), True),
        (refused, False),
    ]
    for error, sent in cases:
        assert _classify(error).sent is sent, error.__cause__ or error


def test_httpx_own_failures_keep_their_table() -> None:
    """Without an aiohttp cause, httpx's connect-phase errors are not sent and the rest are."""
    assert _classify(httpx.ConnectError("refused")).sent is False
    assert _classify(httpx.ConnectTimeout("slow connect")).sent is False
    assert _classify(httpx.PoolTimeout("pool")).sent is False
    assert _classify(httpx.ReadTimeout("slow answer")).sent is True
    assert _classify(httpx.RemoteProtocolError("disconnected")).sent is True
    assert _classify(httpx.WriteError("broken pipe")).sent is True
