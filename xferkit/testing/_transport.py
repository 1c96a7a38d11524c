"""An httpx transport that delivers requests to fake venues in-process, with no sockets.

Routing is by the request's host, so one ``httpx.AsyncClient`` can serve every fake venue at
its real base URL. Actions become what httpx would raise for the real failure: a dropped
connection is ``RemoteProtocolError``, a refused one ``ConnectError``, a slow answer
``ReadTimeout`` (at once: the venue has already committed, and no test should really wait).
"""

from __future__ import annotations

import anyio.lowlevel
import httpx

from ._sim import Drop, FakeVenue, Refuse, SimRequest, Slow

__all__ = ["FakeTransport"]


class FakeTransport(httpx.AsyncBaseTransport):
    """Route each request to the fake venue whose ``host`` matches the URL's host.

    Args:
        venues: the fake venues; their hosts must differ. A request to any other host fails
            with ``httpx.ConnectError``, as an unreachable host would.
    """

    def __init__(self, *venues: FakeVenue) -> None:
        self._venues: dict[str, FakeVenue] = {}
        for venue in venues:
            if venue.host in self._venues:
                raise ValueError(f"two fake venues answer on host {venue.host!r}")
            self._venues[venue.host] = venue

    def __repr__(self) -> str:
        return f"FakeTransport({', '.join(self._venues)})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Deliver ``request`` to its venue and turn the venue's action into httpx's terms."""
        # One checkpoint per request, so concurrent senders interleave as over a network.
        await anyio.lowlevel.checkpoint()
        venue = self._venues.get(request.url.host)
        if venue is None:
            raise httpx.ConnectError(f"no fake venue at {request.url.host}", request=request)
        body = await request.aread()
        # The raw target, as the loopback server sees it: signatures cover the path as sent.
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        action = venue.handle(
            SimRequest(
                method=request.method,
                path=path,
                query=query,
                headers=dict(request.headers.items()),
                body=body,
            )
        )
        if isinstance(action, Refuse):
            raise httpx.ConnectError("connection refused (simulated)", request=request)
        if isinstance(action, Drop):
            raise httpx.RemoteProtocolError(
                "server disconnected without sending a response (simulated)", request=request
            )
        if isinstance(action, Slow):
            raise httpx.ReadTimeout("the venue answered too late (simulated)", request=request)
        return httpx.Response(
            action.status, headers=dict(action.headers), content=action.body, request=request
        )
