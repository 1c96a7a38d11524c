"""A signing caller for the fake venues' tests: xferkit's own XT signer over httpx."""

from __future__ import annotations

import json

import httpx

from xferkit._clock import Clock
from xferkit._http import HttpRequest
from xferkit.venues.xt import XT, sign

# The key pair of the test vectors in shared/venues/xt.md.
KEY = "3976eb88-76d0-4f6e-a6b2-a57980770085"
SECRET = "bc6630d0231fda5cd98794f52c4998659beda290"


class XTCaller:
    """Signs requests with xferkit's own XT signer and sends them through an httpx client."""

    def __init__(self, http: httpx.AsyncClient, xt: XT, clock: Clock) -> None:
        self.http = http
        self.xt = xt
        self.clock = clock

    @staticmethod
    def body(
        biz_id: str = "biz-1",
        *,
        source: str = "SPOT",
        target: str = "FUTURES_U",
        currency: str = "usdt",
        amount: object = "10",
        symbol: str | None = None,
    ) -> str:
        """A transfer body in XT's field order."""
        fields: dict[str, object] = {"bizId": biz_id, "from": source, "to": target}
        fields["currency"] = currency
        if symbol is not None:
            fields["symbol"] = symbol
        fields["amount"] = amount
        return json.dumps(fields, separators=(",", ":"))

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
        return await self.send(self.xt.transfer_request(body or self.body(), stamp))

    def balance_request(self, currency: str, *, timestamp_ms: int | None = None) -> HttpRequest:
        """A signed ``GET /v4/balance?currency=...``, built with xferkit's ``sign``."""
        stamp = self.now_ms() if timestamp_ms is None else timestamp_ms
        signature = sign(
            api_key=self.xt.api_key,
            secret=self.xt.secret,
            method="GET",
            path="/v4/balance",
            timestamp_ms=stamp,
            recv_window_ms=self.xt.recv_window_ms,
            query={"currency": currency},
        )
        headers = {
            "validate-algorithms": "HmacSHA256",
            "validate-appkey": self.xt.api_key,
            "validate-recvwindow": str(self.xt.recv_window_ms),
            "validate-timestamp": str(stamp),
            "validate-signature": signature,
        }
        url = f"{self.xt.base_url}/v4/balance?currency={currency}"
        return HttpRequest(method="GET", url=url, headers=headers)

    async def server_time(self) -> int:
        """Ask the venue's unsigned time endpoint."""
        response = await self.send(self.xt.time_request())
        return int(response.json()["result"]["serverTime"])
