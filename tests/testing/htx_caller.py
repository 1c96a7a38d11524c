"""A signing caller for the fake HTX's tests: xferkit's own HTX signer over httpx."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from xferkit._clock import Clock
from xferkit._http import HttpRequest, HttpResponse
from xferkit.venues.htx import HTX, canonical_query, format_timestamp, sign

# The key pair of the test vectors in shared/venues/htx.md.
KEY = "e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx"
SECRET = "b0xxxxxx-c6xxxxxx-94xxxxxx-dxxxx"


def to_http_response(response: httpx.Response) -> HttpResponse:
    """The transport-neutral answer xferkit's venue module parses."""
    return HttpResponse(
        status=response.status_code, headers=dict(response.headers), body=response.content
    )


class HTXCaller:
    """Signs requests with xferkit's own HTX signer and sends them through an httpx client."""

    def __init__(self, http: httpx.AsyncClient, htx: HTX, clock: Clock) -> None:
        self.http = http
        self.htx = htx
        self.clock = clock

    @staticmethod
    def body(
        *,
        source: str = "spot",
        target: str = "linear-swap",
        currency: str = "usdt",
        amount: object = Decimal("10"),
        margin_account: str | None = "USDT",
    ) -> str:
        """A transfer body in HTX's field order; a ``Decimal`` amount is a JSON number."""
        fields: dict[str, object] = {"from": source, "to": target, "currency": currency}
        fields["amount"] = "__AMOUNT__" if isinstance(amount, Decimal) else amount
        if margin_account is not None and "linear-swap" in (source, target):
            fields["margin-account"] = margin_account
        text = json.dumps(fields, separators=(",", ":"))
        if isinstance(amount, Decimal):
            text = text.replace('"__AMOUNT__"', format(amount, "f"))
        return text

    def now_ms(self) -> int:
        """The caller's local time in ms (the fake's clock before any skew)."""
        return int(self.clock.time() * 1000)

    async def send(self, request: HttpRequest) -> httpx.Response:
        """Send a prepared request exactly as built."""
        return await self.http.request(
            request.method, request.url, headers=dict(request.headers), content=request.body
        )

    async def transfer(
        self, body: str | None = None, *, timestamp_ms: int | None = None
    ) -> httpx.Response:
        """Sign ``body`` (a default transfer) at ``timestamp_ms`` (now) and send it."""
        stamp = self.now_ms() if timestamp_ms is None else timestamp_ms
        return await self.send(self.htx.transfer_request(body or self.body(), stamp))

    async def accounts(self, *, timestamp_ms: int | None = None) -> httpx.Response:
        """``GET /v1/account/accounts``, signed by xferkit's HTX module."""
        stamp = self.now_ms() if timestamp_ms is None else timestamp_ms
        return await self.send(self.htx.accounts_request(stamp))

    def ledger_request(
        self, query: Mapping[str, str | int] | None = None, *, timestamp_ms: int | None = None
    ) -> HttpRequest:
        """A signed ``GET /v2/account/ledger`` with exactly ``query`` (plus the auth params),
        built with xferkit's ``sign``; unlike the module's own request, any limit can be set."""
        stamp = self.now_ms() if timestamp_ms is None else timestamp_ms
        params = {
            "AccessKeyId": self.htx.access_key,
            "SignatureMethod": "HmacSHA256",
            "SignatureVersion": "2",
            "Timestamp": format_timestamp(stamp),
            **{name: str(value) for name, value in (query or {}).items()},
        }
        host = urlsplit(self.htx.base_url).netloc
        path = "/v2/account/ledger"
        signature = sign(secret=self.htx.secret, method="GET", host=host, path=path, params=params)
        query_text = f"{canonical_query(params)}&Signature={quote(signature, safe='')}"
        return HttpRequest(method="GET", url=f"{self.htx.base_url}{path}?{query_text}")

    async def ledger(self, **query: str | int) -> dict[str, Any]:
        """Send a ledger query signed now and return its decoded answer (HTTP 200 expected)."""
        response = await self.send(self.ledger_request(query))
        assert response.status_code == 200
        decoded: dict[str, Any] = response.json()
        return decoded

    async def server_time(self) -> int:
        """Ask the venue's unsigned time endpoint."""
        return self.htx.parse_server_time(
            to_http_response(await self.send(self.htx.time_request()))
        )
