"""An httpx transport over an aiohttp session: httpx stays the API, aiohttp moves the bytes.

Why not httpx-aiohttp, which does the same: two of its choices cost this SDK what it cares
most about. It maps every ``aiohttp.ClientConnectionError``, including a disconnect after the
request was written, to ``httpx.ConnectTimeout``, the error that means "never sent"; and it
hands aiohttp the ``httpx.Headers`` object, which aiohttp re-reads name by name, decoding each
on every access (many calls in a profile, though swapping the transport alone left a raw
httpx loop's throughput unchanged). This module maps aiohttp's errors
to the httpx errors that say the same about the request's fate, hands aiohttp plain pairs,
and reads each answer whole: venue answers are a few hundred bytes, and a response that holds
no connection open needs no stream wrapper to close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport", "to_httpx_error"]

_NO_TIMEOUT: dict[str, Any] = {}


def to_httpx_error(error: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx error that says what ``error`` says about whether the request was sent.

    Only these fail before a byte is written: no connection could be made (refused, DNS, TLS
    handshake, proxy), the connect phase (pool wait included) timed out, or the URL is one
    aiohttp cannot use. Everything else may come after the venue received the request.
    """
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message)
    if isinstance(error, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    return httpx.RemoteProtocolError(message)  # a malformed answer: the request went out


def _client_timeout(timeout: dict[str, float | None]) -> aiohttp.ClientTimeout:
    # httpx's phases onto aiohttp's: "connect" covers the pool wait and the connection.
    # aiohttp has no write timeout; the read timeout bounds the wait for the answer.
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout.get("pool"),
        sock_connect=timeout.get("connect"),
        sock_read=timeout.get("read"),
    )


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with ``session``; closing the transport closes the session.

    Redirects are never followed, bodies are never decompressed here (httpx decodes them),
    and cookies are the session's business (give it a ``DummyCookieJar``).
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session requests go through."""
        return self._session

    def _timeout(self, phases: dict[str, float | None]) -> aiohttp.ClientTimeout:
        key = (phases.get("pool"), phases.get("connect"), phases.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            if len(self._timeouts) > 64:  # callers' deadlines make many: keep a few
                self._timeouts.clear()
            timeout = self._timeouts[key] = _client_timeout(phases)
        return timeout

    def _yarl(self, url: str) -> yarl.URL:
        """``url`` exactly as given: aiohttp would otherwise re-quote it (``%3A`` goes out as
        ``:``), and a signed query string must reach the venue byte for byte as signed."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = yarl.URL(url, encoded=True)
            if "?" not in url:  # a signed query string (HTX) never repeats
                if len(self._urls) > 64:
                    self._urls.clear()
                self._urls[url] = parsed
        return parsed

    async def send_bytes(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> tuple[int, Sequence[tuple[bytes, bytes]], bytes]:
        """Send one request without httpx's request and response objects, for xferkit's own
        client (see ``Transport._send_direct``): status, raw header pairs, undecoded body.

        ``timeout`` bounds every phase, as ``httpx.Timeout(timeout)`` does.

        Raises:
            httpx.TransportError: as `handle_async_request` does.
        """
        try:
            async with self._session.request(
                method,
                self._yarl(url),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=self._timeout({"pool": timeout, "connect": timeout, "read": timeout}),
            ) as response:
                return response.status, response.raw_headers, await response.read()
        except aiohttp.ClientError as exc:
            raise to_httpx_error(exc) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the whole answer.

        Raises:
            httpx.TransportError: the subclass that tells whether the request may have been
                sent (see `to_httpx_error`); the aiohttp error is its ``__cause__``.
        """
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
        ]
        try:
            async with self._session.request(
                request.method,
                self._yarl(str(request.url)),
                headers=headers,
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=self._timeout(request.extensions.get("timeout", _NO_TIMEOUT)),
            ) as response:
                body = await response.read()
        except aiohttp.ClientError as exc:
            raise to_httpx_error(exc) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            content=body,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        """Close the aiohttp session and its connections."""
        await self._session.close()
