"""A real HTTP/1.1 server on loopback for the fake venues, for tests that need real sockets.

Each venue gets its own port, so routing is by port and the ``Host`` header (``127.0.0.1:PORT``)
is never checked. Connections are kept alive across requests, as httpx expects. All tasks run
in one task group that `serve` cancels on exit, so nothing outlives the context.

Over TCP a refused connection cannot be told apart per request: the kernel has already accepted
the connection before the request arrives. ``Refuse`` therefore resets the connection after
reading the request head, without answering; the client sees a read or protocol error rather
than a connect error. The in-process `FakeTransport` reports the exact ``ConnectError``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator, Mapping

import anyio
import anyio.abc
import attrs
import h11

from ._sim import Drop, FakeVenue, Refuse, SimRequest, SimResponse, Slow

__all__ = ["LoopbackServer", "serve"]

_READ_CHUNK = 65536
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


@attrs.frozen
class LoopbackServer:
    """Where `serve` listens: one ``http://127.0.0.1:PORT`` per venue.

    ``urls`` maps each venue's host (``sapi.xt.com``) to its URL.
    """

    urls: Mapping[str, str]
    _names: Mapping[str, str] = attrs.field(alias="names")

    def url(self, name_or_host: str) -> str:
        """The base URL of a venue, by its name (``"xt"``) or its host (``"sapi.xt.com"``)."""
        host = self._names.get(name_or_host, name_or_host)
        try:
            return self.urls[host]
        except KeyError:
            raise KeyError(f"no venue {name_or_host!r} is served here") from None


@contextlib.asynccontextmanager
async def serve(
    *venues: FakeVenue,
    slow_seconds: float = 1.0,
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
) -> AsyncIterator[LoopbackServer]:
    """Serve ``venues`` on loopback ports until the block exits.

    Args:
        venues: the fake venues; each gets its own port.
        slow_seconds: how long a ``Slow`` answer is held back (a real sleep); make it longer
            than the client's timeout.
        host: the loopback address to listen on (``127.0.0.1`` or ``::1``); anything else is
            refused, since the fakes accept published demo credentials.
        ports: a fixed port per venue name (``{"xt": 8101}``); the others get free ports.

    Raises:
        ValueError: ``host`` is not a loopback address.
        OSError: a requested port cannot be bound.
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address: fake venues serve loopback only")
    wanted = dict(ports or {})
    netloc = f"[{host}]" if ":" in host else host
    async with contextlib.AsyncExitStack() as listeners:
        urls: dict[str, str] = {}
        names: dict[str, str] = {}
        handlers: list[tuple[anyio.abc.Listener[anyio.abc.SocketStream], _ConnectionHandler]] = []
        for venue in venues:
            # Entered before the task group, so listeners close only after every task ended.
            listener = await listeners.enter_async_context(
                await anyio.create_tcp_listener(
                    local_host=host, local_port=wanted.get(venue.name, 0)
                )
            )
            port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
            urls[venue.host] = f"http://{netloc}:{port}"
            names[venue.name] = venue.host
            handlers.append((listener, _ConnectionHandler(venue, slow_seconds)))
        # The block's own error is caught inside the task group and raised after it, so that
        # `pytest.raises(...)` around `serve()` sees it as it is, not inside an ExceptionGroup.
        failure: BaseException | None = None
        async with anyio.create_task_group() as task_group:
            for bound, handler in handlers:
                task_group.start_soon(bound.serve, handler.run, task_group)
            try:
                yield LoopbackServer(urls=urls, names=names)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, once the tasks ended
                failure = exc
            finally:
                task_group.cancel_scope.cancel()
        if failure is not None:
            raise failure


@attrs.frozen
class _ConnectionHandler:
    """Serves the requests on one connection to one venue, one at a time."""

    venue: FakeVenue
    slow_seconds: float

    async def run(self, stream: anyio.abc.SocketStream) -> None:
        # A client that hangs up or sends garbage ends its own connection, not the server; a
        # bug in the fake (h11.LocalProtocolError, or anything handle() raises) still surfaces.
        with contextlib.suppress(*_BROKEN, h11.RemoteProtocolError):
            async with stream:
                connection = h11.Connection(h11.SERVER)
                while await self._serve_one(connection, stream):
                    connection.start_next_cycle()

    async def _serve_one(self, connection: h11.Connection, stream: anyio.abc.SocketStream) -> bool:
        """Answer one request; return whether the connection stays open for the next one."""
        received = await _receive(connection, stream)
        if received is None:
            return False
        action = self.venue.handle(received)
        if isinstance(action, Refuse):
            _reset_on_close(stream)
            return False
        if isinstance(action, Drop):
            return False
        if isinstance(action, Slow):
            await anyio.sleep(self.slow_seconds)
            action = action.response
        await _send(connection, stream, action)
        return connection.our_state is h11.DONE and connection.their_state is h11.DONE


async def _receive(connection: h11.Connection, stream: anyio.abc.SocketStream) -> SimRequest | None:
    """Read one whole request; ``None`` when the client closed the connection between requests."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(_READ_CHUNK)
            except anyio.EndOfStream:
                data = b""
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            path, _, query = head.target.decode("ascii").partition("?")
            headers: dict[str, str] = {}
            for name, value in head.headers:
                key = name.decode("latin-1")
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            return SimRequest(
                method=head.method.decode("ascii"),
                path=path,
                query=query,
                headers=headers,
                body=bytes(body),
            )
        else:  # ConnectionClosed: the client hung up between requests
            return None


async def _send(
    connection: h11.Connection, stream: anyio.abc.SocketStream, response: SimResponse
) -> None:
    headers = [*response.headers.items(), ("content-length", str(len(response.body)))]
    events = (
        h11.Response(status_code=response.status, headers=headers),
        h11.Data(data=response.body),
        h11.EndOfMessage(),
    )
    await stream.send(b"".join(connection.send(event) or b"" for event in events))


def _reset_on_close(stream: anyio.abc.SocketStream) -> None:
    """Make closing send a TCP reset (linger 0), as a refusing peer does, instead of a FIN."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
