"""Send one prepared request over httpx; the only core module that imports httpx.

It never retries (retries live above signing, in the engine) and it sorts every transport
failure into "provably not sent" or "may have arrived", the distinction the engine's safety
rests on.
"""

from __future__ import annotations

import httpx

from ._http import HttpRequest, HttpResponse

__all__ = ["DEFAULT_LIMITS", "HttpClient", "SendError", "Transport"]

HttpClient = httpx.AsyncClient
"""The HTTP client type callers may pass as ``Client(http_client=...)``."""

DEFAULT_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30)
USER_AGENT = "xferkit/0.1"

# Failures raised before a single byte of the request could reach the venue.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class SendError(Exception):
    """The request failed below HTTP. ``sent`` is False only when it provably never left."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class Transport:
    """Sends `HttpRequest` values with a shared ``httpx.AsyncClient``.

    Args:
        http_client: the caller's client; it is used as given and not closed here.
            Without one, a client with explicit pool limits is created and owned.
    """

    def __init__(self, http_client: httpx.AsyncClient | None = None) -> None:
        self._owned = http_client is None
        self._client = http_client or httpx.AsyncClient(
            limits=DEFAULT_LIMITS,
            headers={"user-agent": USER_AGENT},
            follow_redirects=False,  # a redirected POST could be replayed elsewhere
            trust_env=True,
        )

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send ``request`` once, bounded by ``timeout`` seconds per phase.

        Raises:
            SendError: on any failure below HTTP, with ``sent`` telling whether it may
                have reached the venue.
        """
        try:
            response = await self._client.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                content=request.body,
                timeout=httpx.Timeout(timeout),
            )
        except _NOT_SENT as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", sent=False) from exc
        except httpx.HTTPError as exc:
            # Read/write timeouts, resets and protocol errors: the venue may have the request.
            raise SendError(f"{type(exc).__name__}: {exc}", sent=True) from exc
        return HttpResponse(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.content,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this transport created it."""
        if self._owned:
            await self._client.aclose()
