"""Send one prepared request over httpx; the only core module that imports httpx (and aiohttp).

It never retries (retries live above signing, in the engine) and it sorts every transport
failure into "provably not sent" or "may have arrived", the distinction the engine's safety
rests on.

httpx is the HTTP API in every case; the transport under it is one of two backends:

* ``"httpx"``: httpx's own (httpcore). Runs under asyncio and trio.
* ``"aiohttp"``: xferkit's ``AiohttpTransport`` (``_aiohttp``) over an aiohttp session, from
  the ``fast`` extra. asyncio only. Several times httpx's own throughput with tens of
  concurrent requests, where httpcore's pool bookkeeping grows with connections x waiters
  (see the performance page).

``"auto"`` (the default) takes ``"aiohttp"`` when it is installed and asyncio is running, and
``"httpx"`` otherwise: under trio, without the extra, or when the environment names a proxy
(the aiohttp session here does not read the environment). A caller's own
``httpx.AsyncClient`` is always used as given, whatever its transport.

A caller's client may sit on httpx-aiohttp, which translates aiohttp's exceptions into httpx's
but not into the ones that tell "never sent" from "may have arrived": it maps every
``aiohttp.ClientConnectionError``, including ``ServerDisconnectedError`` after the request was
written, to ``httpx.ConnectTimeout``. So a failure caused by aiohttp is judged by the aiohttp
exception itself, never by its httpx name.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

import httpx

from ._exceptions import InvalidRequestError
from ._http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from ._aiohttp import AiohttpTransport

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "Backend",
    "HttpClient",
    "SendError",
    "Transport",
]

_log = logging.getLogger("xferkit.transport")

HttpClient = httpx.AsyncClient
"""The HTTP client type callers may pass as ``Client(http_client=...)``."""

Backend = Literal["auto", "httpx", "aiohttp"]
"""Which transport runs under httpx: ``"auto"`` picks aiohttp when installed on asyncio."""

_MAX_CONNECTIONS = 64
_MAX_KEEPALIVE = 32
_KEEPALIVE_SECONDS = 30.0
_DEFAULT_TIMEOUT_SECONDS = 10.0

DEFAULT_LIMITS = httpx.Limits(
    max_connections=_MAX_CONNECTIONS,
    max_keepalive_connections=_MAX_KEEPALIVE,
    keepalive_expiry=_KEEPALIVE_SECONDS,
)
DEFAULT_TIMEOUT = httpx.Timeout(_DEFAULT_TIMEOUT_SECONDS)
"""Per-phase timeout of a client built here; `Transport.send` always passes its own."""
USER_AGENT = "xferkit/0.1"
_URL_CACHE_SIZE = 64

# Failures raised before a single byte of the request could reach the venue (httpx's own
# transport; aiohttp's failures are judged by `_aiohttp_sent`).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class SendError(Exception):
    """The request failed below HTTP. ``sent`` is False only when it provably never left."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


def _asyncio_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _env_proxies() -> bool:
    """Whether the environment names an HTTP(S) proxy (``HTTPS_PROXY``, ``ALL_PROXY``, ...)."""
    from urllib.request import getproxies  # noqa: PLC0415 - only when choosing a backend

    return any(getproxies().get(scheme) for scheme in ("http", "https", "all"))


def _aiohttp_errors() -> tuple[type[Exception], ...]:
    """aiohttp's base error, if aiohttp is loaded; a failure cannot come from it otherwise."""
    aiohttp = sys.modules.get("aiohttp")
    return () if aiohttp is None else (aiohttp.ClientError,)


def _aiohttp_sent(error: Exception) -> bool:
    """Whether the request that failed with this aiohttp error may have reached the venue:
    judged by the httpx error xferkit's aiohttp transport maps it to (`to_httpx_error`).

    Only a failed connection (refused, DNS, TLS handshake, proxy), a timed-out connect phase
    (pool wait included) or a URL aiohttp cannot use come before the request is written.
    Everything else (``ServerDisconnectedError``, resets, read timeouts, payload and response
    parsing errors) may come after the venue received the request.
    """
    import aiohttp  # noqa: PLC0415 - loaded already: the error came from it

    from ._aiohttp import to_httpx_error  # noqa: PLC0415 - it imports aiohttp

    assert isinstance(error, aiohttp.ClientError)  # noqa: S101 - `_classify` checked it
    return not isinstance(to_httpx_error(error), _NOT_SENT)


def _classify(exc: Exception) -> SendError:
    """Turn a failed send into a `SendError`, judged by its root cause."""
    aiohttp_errors = _aiohttp_errors()
    cause = exc if isinstance(exc, aiohttp_errors) else exc.__cause__
    if aiohttp_errors and isinstance(cause, aiohttp_errors):
        return SendError(f"{type(cause).__name__}: {cause}", sent=_aiohttp_sent(cause))
    # httpx's own transport: read/write timeouts, resets and protocol errors may have arrived.
    return SendError(f"{type(exc).__name__}: {exc}", sent=not isinstance(exc, _NOT_SENT))


def _answer(response: httpx.Response) -> HttpResponse:
    return HttpResponse(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        body=response.content,
    )


def _raw_answer(
    status: int, raw_headers: Sequence[tuple[bytes, bytes]], body: bytes
) -> HttpResponse:
    """An answer read by `AiohttpTransport.send_bytes`, as `_answer` would give it."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value  # as httpx
    if headers.get("content-encoding", "identity") != "identity":
        # Compressed: let httpx decode it, as it does on its own path (venues rarely do this).
        body = httpx.Response(status, headers=list(raw_headers), content=body).content
    return HttpResponse(status=status, headers=headers, body=body)


def _httpx_client(transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        limits=DEFAULT_LIMITS,  # httpx's own pool; the aiohttp transport has its own limits
        timeout=DEFAULT_TIMEOUT,
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,  # a redirected POST could be replayed elsewhere
        trust_env=True,
    )


def _aiohttp_transport() -> AiohttpTransport:
    """An httpx transport over a new aiohttp session, with every pool and timeout setting explicit.

    Raises:
        ImportError: the ``fast`` extra (httpx-aiohttp, aiohttp) is not installed.
    """
    import aiohttp  # noqa: PLC0415 - optional, and ~50 ms to import: only when chosen

    from ._aiohttp import AiohttpTransport  # noqa: PLC0415 - it imports aiohttp

    connector = aiohttp.TCPConnector(
        limit=_MAX_CONNECTIONS,  # as httpx's pool: one cap over all hosts
        limit_per_host=0,
        # aiohttp keeps every idle connection until it expires; it has no count for them.
        keepalive_timeout=_KEEPALIVE_SECONDS,
        ssl=httpx.create_ssl_context(trust_env=True),  # httpx's defaults: certifi, SSL_CERT_*
    )
    session = aiohttp.ClientSession(
        connector=connector,
        # Replaced per request by httpx's timeout (connect = pool wait + connect, sock_connect,
        # sock_read); there is no write timeout under aiohttp.
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=_DEFAULT_TIMEOUT_SECONDS,
            sock_connect=_DEFAULT_TIMEOUT_SECONDS,
            sock_read=_DEFAULT_TIMEOUT_SECONDS,
        ),
        cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies; not twice
        # With trust_env, aiohttp reads ~/.netrc in a worker thread on every request: a
        # thread hop per request cut throughput by 4x in the benchmark. Proxies from the
        # environment therefore send "auto" to httpx's own transport (`_env_proxies`).
        trust_env=False,
        auto_decompress=False,  # httpx decodes the body
        raise_for_status=False,
    )
    return AiohttpTransport(session)


class Transport:
    """Sends `HttpRequest` values with a shared ``httpx.AsyncClient``.

    Args:
        http_client: the caller's client; it is used as given and not closed here.
            Without one, a client with explicit pool limits and timeouts is created and owned.
        backend: the transport under the client this creates: ``"auto"`` (aiohttp when the
            ``fast`` extra is installed, asyncio is running and no proxy is set in the
            environment; else httpx's own), ``"httpx"`` or ``"aiohttp"`` (which ignores proxy
            variables). Only ``"auto"`` goes with a caller's ``http_client``.

    Raises:
        InvalidRequestError: an unknown backend, a backend with ``http_client``, or
            ``"aiohttp"`` without the ``fast`` extra or outside asyncio.
    """

    def __init__(
        self, http_client: httpx.AsyncClient | None = None, *, backend: Backend = "auto"
    ) -> None:
        if backend not in get_args(Backend):
            raise InvalidRequestError(
                f"backend must be 'auto', 'httpx' or 'aiohttp', not {backend!r}"
            )
        self._owned = http_client is None
        self._urls: dict[str, httpx.URL] = {}
        self._aiohttp: AiohttpTransport | None = None
        if http_client is not None:
            if backend != "auto":
                raise InvalidRequestError(
                    f"backend={backend!r} applies to a client xferkit builds; "
                    "a caller's http_client is used as given"
                )
            self._client = http_client
            self._backend = "caller"
            return
        self._backend = self._choose(backend)
        self._aiohttp = _aiohttp_transport() if self._backend == "aiohttp" else None
        self._client = _httpx_client(self._aiohttp)
        self._default_headers = dict(self._client.headers)
        _log.debug("HTTP transport: %s (asked for %s)", self._backend, backend)

    @staticmethod
    def _choose(backend: Backend) -> Literal["httpx", "aiohttp"]:
        if backend == "httpx":
            return "httpx"
        if not _asyncio_running():
            if backend == "aiohttp":
                raise InvalidRequestError(
                    "the aiohttp transport runs only under asyncio; use backend='httpx' "
                    "under trio (and create the client inside the running event loop)"
                )
            return "httpx"  # trio, or no loop yet: aiohttp cannot run there
        if backend == "auto" and _env_proxies():
            return "httpx"  # httpx's own transport honours them; the aiohttp session does not
        try:
            import aiohttp  # noqa: F401, PLC0415 - is the fast extra installed?
        except ImportError as exc:
            if backend == "aiohttp":
                raise InvalidRequestError(
                    "the aiohttp transport needs the fast extra: pip install 'xferkit[fast]'"
                ) from exc
            return "httpx"
        return "aiohttp"

    @property
    def backend(self) -> str:
        """The transport in use: ``"httpx"``, ``"aiohttp"``, or ``"caller"`` (their client)."""
        return self._backend

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send ``request`` once, bounded by ``timeout`` seconds per phase.

        Raises:
            SendError: on any failure below HTTP, with ``sent`` telling whether it may
                have reached the venue.
        """
        try:
            if self._owned:
                return await self._send_direct(request, timeout)
            response = await self._client.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                content=request.body,
                timeout=httpx.Timeout(timeout),
            )
        except httpx.HTTPError as exc:
            raise _classify(exc) from exc
        except _aiohttp_errors() as exc:
            # Errors a caller's aiohttp-backed transport does not translate.
            raise _classify(exc) from exc
        return _answer(response)

    async def _send_direct(self, request: HttpRequest, timeout: float) -> HttpResponse:
        """Hand the request straight to the client's transport for its URL.

        A client built here has no auth, hooks, redirects or cookies to apply, and
        ``AsyncClient.request``'s machinery for them (request merging, the auth and redirect
        generators, response stream wrapping) was about a third of the CPU of a raw
        httpx loop on the aiohttp transport. ``_transport_for_url`` is private httpx API; it
        is used, not the transport itself, because it also chooses the environment's proxy
        mounts and is where respx's httpx-level mocks plug in.

        When that transport is this client's own aiohttp one, the request skips httpx's
        request and response objects too (`AiohttpTransport.send_bytes`): building and reading
        them was most of what httpx still cost per transfer. The same headers go out, and
        failures are the same httpx errors.
        """
        headers = {**self._default_headers, **request.headers}
        # Mounts match on scheme, host and port: the base URL (cached) is enough to choose.
        transport = self._client._transport_for_url(self._url(request.url.partition("?")[0]))
        if transport is self._aiohttp:
            status, raw_headers, body = await self._aiohttp.send_bytes(
                request.method, request.url, headers=headers, body=request.body, timeout=timeout
            )
            return _raw_answer(status, raw_headers, body)
        http_request = httpx.Request(
            request.method,
            self._url(request.url),
            headers=headers,
            content=request.body,
            extensions={"timeout": httpx.Timeout(timeout).as_dict()},
        )
        response = await transport.handle_async_request(http_request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return _answer(response)

    def _url(self, url: str) -> httpx.URL:
        """``url`` parsed, from a small cache: a venue's transfer URL repeats on every send."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if "?" not in url:  # a signed query string (HTX) never repeats
                if len(self._urls) >= _URL_CACHE_SIZE:
                    self._urls.clear()
                self._urls[url] = parsed
        return parsed

    async def aclose(self) -> None:
        """Close the HTTP client (and its aiohttp session) if this transport created it."""
        if self._owned:
            await self._client.aclose()
