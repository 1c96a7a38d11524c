"""What client.transfer("xt", ...) puts on the wire, checked against respx-mocked XT endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

import xferkit
from xferkit import XT, TransferStatus
from xferkit.venues.xt import sign

API_KEY = "3976eb88-76d0-4f6e-a6b2-a57980770085"
SECRET = "bc6630d0231fda5cd98794f52c4998659beda290"
BASE = "https://sapi.xt.com"
SERVER_MS = 1_700_000_123_456
TRANSFER_ID = "226972662307830528"
SUCCESS = b'{"rc":0,"mc":"SUCCESS","ma":[],"result":226972662307830528}'
SIX_HEADERS = (
    "validate-algorithms",
    "validate-appkey",
    "validate-recvwindow",
    "validate-timestamp",
    "validate-signature",
    "content-type",
)


class StepClock:
    """Time stands still until someone sleeps; a sleep moves it forward by that much."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.wall = start
        self.mono = 0.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.wall += max(seconds, 0.0)
        self.mono += max(seconds, 0.0)


class TopJitter(random.Random):
    """Always draws near the top of the jitter range, so each backoff is a real wait."""

    def random(self) -> float:
        return 0.99


def time_response() -> httpx.Response:
    return httpx.Response(
        200, json={"rc": 0, "mc": "SUCCESS", "ma": [], "result": {"serverTime": SERVER_MS}}
    )


def transfer_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "currency": "USDT",
        "amount": Decimal("10"),
        "from_account": "spot",
        "to_account": "usdt_futures",
        "key": "rebalance-0007",
    }
    args.update(overrides)
    return args


def headers_of(request: httpx.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def verify(request: httpx.Request) -> None:
    """Recompute XT's signature from the captured headers and body with the known secret."""
    headers = headers_of(request)
    expected = sign(
        api_key=headers["validate-appkey"],
        secret=SECRET,
        method=request.method,
        path=request.url.path,
        timestamp_ms=int(headers["validate-timestamp"]),
        recv_window_ms=int(headers["validate-recvwindow"]),
        query=dict(request.url.params) or None,
        body=request.content.decode(),
    )
    assert headers["validate-signature"] == expected


@pytest.fixture
async def mocked() -> AsyncIterator[respx.MockRouter]:
    async with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        router.get("/v4/public/time").mock(side_effect=lambda _: time_response())
        yield router


def make_client(**kwargs: Any) -> xferkit.Client:
    kwargs.setdefault("journal", xferkit.MemoryJournal())
    return xferkit.Client(XT(API_KEY, SECRET), **kwargs)


async def test_transfer_request_on_the_wire(mocked: respx.MockRouter) -> None:
    """The transfer is one signed POST with the six headers and the exact signed JSON bytes."""
    route = mocked.post("/v4/balance/transfer").mock(
        return_value=httpx.Response(200, content=SUCCESS)
    )
    async with make_client(clock=StepClock()) as client:
        receipt = await client.transfer("xt", **transfer_args())

    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id == TRANSFER_ID
    assert route.call_count == 1
    request = route.calls[0].request
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v4/balance/transfer"
    headers = headers_of(request)
    for name in SIX_HEADERS:
        assert name in headers
    assert headers["validate-algorithms"] == "HmacSHA256"
    assert headers["validate-appkey"] == API_KEY
    assert headers["validate-recvwindow"] == "5000"
    assert headers["content-type"] == "application/json"
    verify(request)

    biz_id = json.loads(request.content)["bizId"]
    args = transfer_args()
    key = args.pop("key")
    assert biz_id == XT(API_KEY, SECRET).biz_id(key, **args)
    expected = (
        f'{{"bizId":"{biz_id}","from":"SPOT","to":"FUTURES_U","currency":"usdt","amount":"10"}}'
    )
    assert request.content == expected.encode()


async def sent_biz_id(xt: XT, **overrides: Any) -> str:
    """The bizId a fresh client (its own journal) with ``xt`` puts on the wire."""
    async with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        router.get("/v4/public/time").mock(side_effect=lambda _: time_response())
        route = router.post("/v4/balance/transfer").mock(
            return_value=httpx.Response(200, content=SUCCESS)
        )
        client = xferkit.Client(xt, journal=xferkit.MemoryJournal(), clock=StepClock())
        async with client:
            receipt = await client.transfer("xt", **transfer_args(**overrides))
    assert receipt.status is TransferStatus.SUCCEEDED
    assert route.call_count == 1
    return str(json.loads(route.calls[0].request.content)["bizId"])


async def test_the_bizid_on_the_wire_names_account_key_and_parameters() -> None:
    """The same (api key, key, parameters) puts the same bizId on the wire whatever the secret
    or the journal; another key, other parameters or another api key put another one. Each is
    a uuid within XT's 128 characters, and none is xferkit 0.1's (api key, key) token."""
    base = await sent_biz_id(XT(API_KEY, SECRET))
    assert await sent_biz_id(XT(API_KEY, "another-secret")) == base
    assert await sent_biz_id(XT(API_KEY, SECRET), currency="usdt", amount="10.000") == base
    others = [
        await sent_biz_id(XT(API_KEY, SECRET), key="rebalance-0008"),
        await sent_biz_id(XT(API_KEY, SECRET), amount=Decimal("11")),
        await sent_biz_id(XT(API_KEY, SECRET), to_account="coin_futures"),
        await sent_biz_id(XT("another-api-key", SECRET)),
    ]
    assert len({base, *others}) == 1 + len(others)
    for biz_id in (base, *others):
        assert 1 <= len(biz_id) <= 128
        assert str(uuid.UUID(biz_id)) == biz_id
    assert base != XT(API_KEY, SECRET).legacy_token("rebalance-0007")


async def test_body_amount_is_the_amount_asked_for(mocked: respx.MockRouter) -> None:
    """The amount on the wire and in the receipt is exactly the amount the caller asked to move."""
    route = mocked.post("/v4/balance/transfer").mock(
        return_value=httpx.Response(200, content=SUCCESS)
    )
    asked = "12345678901234567890.123456789"
    async with make_client(clock=StepClock()) as client:
        receipt = await client.transfer("xt", **transfer_args(amount=asked))
    assert json.loads(route.calls[0].request.content)["amount"] == asked
    assert receipt.amount == Decimal(asked)


async def test_timestamp_follows_the_server_clock(mocked: respx.MockRouter) -> None:
    """The signed timestamp is taken from the measured server time, a little early, not ahead."""
    route = mocked.post("/v4/balance/transfer").mock(
        return_value=httpx.Response(200, content=SUCCESS)
    )
    # Local clock 30 s behind the server: signing with local time would be refused.
    async with make_client(clock=StepClock(start=SERVER_MS / 1000 - 30)) as client:
        await client.transfer("xt", **transfer_args())
    ts = int(headers_of(route.calls[0].request)["validate-timestamp"])
    assert SERVER_MS - 1000 <= ts <= SERVER_MS


async def test_resend_after_ambiguous_attempt_keeps_body_and_bizid(
    mocked: respx.MockRouter,
) -> None:
    """After a 503 the resend carries byte-identical body and bizId but a fresh timestamp."""
    route = mocked.post("/v4/balance/transfer").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, content=SUCCESS)]
    )
    async with make_client(
        clock=StepClock(), rng=TopJitter(), retry=xferkit.RetryPolicy(initial_backoff=0.01)
    ) as client:
        receipt = await client.transfer("xt", **transfer_args())

    assert receipt.status is TransferStatus.SUCCEEDED
    assert receipt.transfer_id == TRANSFER_ID
    assert receipt.attempts == 2
    assert route.call_count == 2
    first, second = (call.request for call in route.calls)
    assert first.content == second.content
    assert json.loads(first.content)["bizId"] == json.loads(second.content)["bizId"]
    h1, h2 = headers_of(first), headers_of(second)
    assert int(h2["validate-timestamp"]) > int(h1["validate-timestamp"])
    assert h1["validate-signature"] != h2["validate-signature"]
    verify(first)
    verify(second)


async def test_replay_of_the_same_key_sends_nothing(mocked: respx.MockRouter) -> None:
    """Asking again with the same key and parameters returns the stored receipt without I/O."""
    route = mocked.post("/v4/balance/transfer").mock(
        return_value=httpx.Response(200, content=SUCCESS)
    )
    async with make_client(clock=StepClock()) as client:
        first = await client.transfer("xt", **transfer_args())
        requests_before = len(mocked.calls)
        again = await client.transfer("xt", **transfer_args(amount="10.0", currency="usdt"))

    assert len(mocked.calls) == requests_before
    assert route.call_count == 1
    assert again.replayed is True
    assert first.replayed is False
    assert again.transfer_id == first.transfer_id == TRANSFER_ID
    assert again.status is TransferStatus.SUCCEEDED


async def test_replay_with_other_parameters_conflicts_without_io(
    mocked: respx.MockRouter,
) -> None:
    """The same key with another amount raises IdempotencyConflictError and sends nothing."""
    mocked.post("/v4/balance/transfer").mock(return_value=httpx.Response(200, content=SUCCESS))
    async with make_client(clock=StepClock()) as client:
        await client.transfer("xt", **transfer_args())
        requests_before = len(mocked.calls)
        with pytest.raises(xferkit.IdempotencyConflictError):
            await client.transfer("xt", **transfer_args(amount="11"))
    assert len(mocked.calls) == requests_before


async def test_the_caller_supplied_http_client_is_used(mocked: respx.MockRouter) -> None:
    """A caller's httpx.AsyncClient carries the request and is left open afterwards."""
    route = mocked.post("/v4/balance/transfer").mock(
        return_value=httpx.Response(200, content=SUCCESS)
    )
    async with httpx.AsyncClient() as http:
        async with make_client(clock=StepClock(), http_client=http) as client:
            await client.transfer("xt", **transfer_args())
        assert not http.is_closed
    assert route.call_count == 1
    verify(route.calls[0].request)


# -- the secret stays secret --------------------------------------------------------------------


def test_secret_not_in_venue_repr() -> None:
    """repr(XT(...)) shows no part of the secret."""
    text = repr(XT(API_KEY, SECRET))
    assert SECRET not in text
    assert SECRET[:8] not in text


async def test_secret_not_in_client_repr() -> None:
    """repr(client), before and while open, shows no part of the secret."""
    client = make_client(clock=StepClock())
    assert SECRET not in repr(client)
    async with client:
        assert SECRET not in repr(client)


async def test_secret_not_in_a_refusal(
    mocked: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed (AUTH_103) transfer's error, the journal and the logs never contain the secret."""
    mocked.post("/v4/balance/transfer").mock(
        return_value=httpx.Response(
            200, json={"rc": 1, "mc": "AUTH_103", "ma": ["signature error"], "result": None}
        )
    )
    journal = xferkit.MemoryJournal()
    caplog.set_level(logging.DEBUG)
    async with make_client(clock=StepClock(), journal=journal) as client:
        with pytest.raises(xferkit.AuthenticationError) as excinfo:
            await client.transfer("xt", **transfer_args())
        with pytest.raises(xferkit.AuthenticationError) as replayed:
            await client.transfer("xt", **transfer_args())

    for error in (excinfo.value, replayed.value):
        assert error.code == "AUTH_103"
        assert error.venue == "xt"
        for text in (str(error), repr(error), repr(error.args), error.message):
            assert SECRET not in text
    intents = await journal.list()
    assert len(intents) == 1
    assert intents[0].status is TransferStatus.FAILED
    assert SECRET not in repr(intents)
    assert SECRET not in caplog.text
