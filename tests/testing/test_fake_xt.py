"""FakeXT through the in-process transport: signing, clock window, business rules, bizId."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from xferkit.testing import Execution, FakeTransport, FakeXT, VirtualClock
from xferkit.testing._xt import FIRST_TRANSFER_ID
from xferkit.venues.xt import XT

from .xt_caller import KEY, SECRET, XTCaller


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The decoded XT envelope of an answer (HTTP 200 for every business refusal)."""
    assert response.status_code == 200
    decoded: dict[str, Any] = response.json()
    return decoded


def error_code(response: httpx.Response) -> str:
    """The ``mc`` of an ``rc=1`` answer, after checking the error envelope's shape."""
    body = envelope(response)
    assert body["rc"] == 1
    assert body["result"] is None
    assert isinstance(body["ma"], list)
    code: str = body["mc"]
    return code


async def test_valid_transfer_moves_balances_and_is_audited(
    caller: XTCaller, fake: FakeXT, clock: VirtualClock
) -> None:
    """A signed transfer moves the amount between accounts and appears once in the audit."""
    response = await caller.transfer(caller.body("biz-1", amount="12.5"))
    assert response.content == (
        b'{"rc":0,"mc":"SUCCESS","ma":[],"result":' + str(FIRST_TRANSFER_ID).encode() + b"}"
    )
    assert fake.balance("SPOT", "usdt") == Decimal("999987.5")
    assert fake.balance("usdt_futures", "usdt") == Decimal("1000012.5")
    [execution] = fake.audit
    assert execution == Execution(
        venue="xt",
        biz_id="biz-1",
        from_account="SPOT",
        to_account="FUTURES_U",
        currency="usdt",
        amount=Decimal("12.5"),
        transfer_id=str(FIRST_TRANSFER_ID),
        executed_at=execution.executed_at,
    )
    assert execution.executed_at.timestamp() == clock.time()
    assert fake.executions_by_token() == {"biz-1": 1}


async def test_transfer_ids_are_big_sequential_integers(caller: XTCaller) -> None:
    """Ids are unquoted integers above 2**53, counting up from the first."""
    first = await caller.transfer(caller.body("a"))
    second = await caller.transfer(caller.body("b"))
    ids = [json.loads(r.content)["result"] for r in (first, second)]
    assert ids == [FIRST_TRANSFER_ID, FIRST_TRANSFER_ID + 1]
    assert all(isinstance(i, int) and i > 2**53 for i in ids)


async def test_same_biz_id_twice_is_a_duplicate(caller: XTCaller, fake: FakeXT) -> None:
    """A bizId that already executed answers TRANSFER_001, without an id, and moves nothing."""
    body = caller.body("biz-dup")
    assert envelope(await caller.transfer(body))["rc"] == 0
    assert error_code(await caller.transfer(body)) == "TRANSFER_001"
    assert error_code(await caller.transfer(caller.body("biz-dup", amount="3"))) == "TRANSFER_001"
    assert fake.executions_by_token() == {"biz-dup": 1}
    assert fake.balance("SPOT", "usdt") == Decimal("999990")


async def test_tampered_body_fails_the_signature(caller: XTCaller, fake: FakeXT) -> None:
    """The signature is checked over the exact bytes received: a changed body is AUTH_103."""
    request = caller.xt.transfer_request(caller.body(amount="10"), caller.now_ms())
    tampered = request.body.replace(b'"10"', b'"11"') if request.body else b""
    response = await caller.http.post(request.url, headers=dict(request.headers), content=tampered)
    assert error_code(response) == "AUTH_103"
    assert fake.audit == ()


async def test_reserialised_body_fails_the_signature(caller: XTCaller) -> None:
    """Equal JSON with different bytes (spaces) is not what was signed: AUTH_103."""
    body = caller.body()
    request = caller.xt.transfer_request(body, caller.now_ms())
    spaced = json.dumps(json.loads(body)).encode()
    response = await caller.http.post(request.url, headers=dict(request.headers), content=spaced)
    assert error_code(response) == "AUTH_103"


async def test_wrong_secret_fails_the_signature(
    http: httpx.AsyncClient, clock: VirtualClock
) -> None:
    """A request signed with another secret is refused with AUTH_103."""
    caller = XTCaller(http, XT(KEY, "not-the-secret"), clock)
    assert error_code(await caller.transfer()) == "AUTH_103"


async def test_unknown_key_is_refused(http: httpx.AsyncClient, clock: VirtualClock) -> None:
    """An API key the venue does not know is refused with AUTH_101."""
    caller = XTCaller(http, XT("someone-else", SECRET), clock)
    assert error_code(await caller.transfer()) == "AUTH_101"


@pytest.mark.parametrize(
    ("offset_ms", "code"),
    [
        (-4999, None),  # inside the 5000 ms window
        (-5000, "AUTH_105"),  # server - timestamp >= recvwindow
        (-60_000, "AUTH_105"),
        (1000, None),  # up to 1 s ahead is tolerated
        (1001, "AUTH_105"),  # more than 1 s ahead
    ],
)
async def test_timestamp_window(caller: XTCaller, offset_ms: int, code: str | None) -> None:
    """Stale timestamps (a whole window old) and future ones (over 1 s ahead) are AUTH_105."""
    response = await caller.transfer(timestamp_ms=caller.now_ms() + offset_ms)
    if code is None:
        assert envelope(response)["rc"] == 0
    else:
        assert error_code(response) == code


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("validate-appkey", "AUTH_001"),
        ("validate-timestamp", "AUTH_002"),
        ("validate-recvwindow", "AUTH_003"),
        ("validate-algorithms", "AUTH_005"),
        ("validate-signature", "AUTH_007"),
    ],
)
async def test_missing_header(caller: XTCaller, fake: FakeXT, header: str, code: str) -> None:
    """Each missing validate-* header has its own AUTH code, and nothing executes."""
    request = caller.xt.transfer_request(caller.body(), caller.now_ms())
    headers = {k: v for k, v in request.headers.items() if k != header}
    response = await caller.http.post(request.url, headers=headers, content=request.body)
    assert error_code(response) == code
    assert fake.audit == ()


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("validate-recvwindow", "1999", "AUTH_004"),
        ("validate-recvwindow", "60001", "AUTH_004"),
        ("validate-recvwindow", "five", "AUTH_004"),
        ("validate-algorithms", "HmacSHA999", "AUTH_006"),
        ("validate-timestamp", "yesterday", "AUTH_002"),
    ],
)
async def test_bad_header(caller: XTCaller, header: str, value: str, code: str) -> None:
    """A receive window outside 2000..60000, another algorithm or a bad timestamp is refused."""
    request = caller.xt.transfer_request(caller.body(), caller.now_ms())
    headers = {**request.headers, header: value}
    response = await caller.http.post(request.url, headers=headers, content=request.body)
    assert error_code(response) == code


@pytest.mark.parametrize("window", [2000, 60000])
async def test_receive_window_bounds_are_accepted(
    http: httpx.AsyncClient, clock: VirtualClock, window: int
) -> None:
    """Both ends of the documented receive window range are valid."""
    caller = XTCaller(http, XT(KEY, SECRET, recv_window_ms=window), clock)
    assert envelope(await caller.transfer())["rc"] == 0


async def test_document_test_vector_is_accepted(http: httpx.AsyncClient) -> None:
    """The signed transfer from xt.md's test vectors verifies, independent of xferkit's signer."""
    body = (
        '{"bizId":"7f1c2b9e-0000-4000-8000-000000000001","from":"SPOT","to":"FUTURES_U",'
        '"currency":"usdt","amount":"10"}'
    )
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=VirtualClock(start=1641446237.201))
    headers = {
        "validate-algorithms": "HmacSHA256",
        "validate-appkey": KEY,
        "validate-recvwindow": "5000",
        "validate-timestamp": "1641446237201",
        "validate-signature": "e7e41817b8d4b7da08781e5c483aab4b9c674a33089102c583ee70d8c34f00fe",
        "content-type": "application/json",
    }
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as client:
        response = await client.post(
            "https://sapi.xt.com/v4/balance/transfer", headers=headers, content=body
        )
    assert envelope(response)["rc"] == 0
    assert len(fake.audit) == 1


async def test_insufficient_balance_moves_nothing_and_keeps_the_biz_id(
    caller: XTCaller, fake: FakeXT
) -> None:
    """FUND_002 moves nothing, and by default the same bizId can still execute later."""
    too_much = caller.body("biz-poor", amount="1000000.01")
    assert error_code(await caller.transfer(too_much)) == "FUND_002"
    assert fake.audit == ()
    assert fake.balance("SPOT", "usdt") == Decimal("1000000")
    assert envelope(await caller.transfer(caller.body("biz-poor", amount="1")))["rc"] == 0
    assert fake.executions_by_token() == {"biz-poor": 1}


async def test_failed_attempt_spends_the_biz_id_when_configured(clock: VirtualClock) -> None:
    """With failed_attempts_spend_bizid, a refused bizId answers TRANSFER_001 ever after."""
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock, failed_attempts_spend_bizid=True)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = XTCaller(http, XT(KEY, SECRET), clock)
        assert error_code(await caller.transfer(caller.body("b", amount="1e9"))) == "FUND_017"
        assert error_code(await caller.transfer(caller.body("b", amount="1"))) == "TRANSFER_001"
    assert fake.audit == ()


async def test_auth_failures_never_spend_the_biz_id(clock: VirtualClock) -> None:
    """Even when failures spend bizIds, a request refused at the gateway (auth) does not."""
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock, failed_attempts_spend_bizid=True)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = XTCaller(http, XT(KEY, SECRET), clock)
        stale = caller.now_ms() - 10_000
        assert error_code(await caller.transfer(timestamp_ms=stale)) == "AUTH_105"
        assert envelope(await caller.transfer())["rc"] == 0


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"biz_id": ""}, "FUND_017"),
        ({"biz_id": "x" * 129}, "FUND_017"),
        ({"source": "SPOT", "target": "SPOT"}, "FUND_015"),
        ({"source": "spot"}, "FUND_017"),
        ({"target": "OTC"}, "FUND_017"),
        ({"target": "LEVER"}, "FUND_016"),
        ({"target": "LEVER", "symbol": "eth_usdt"}, "SYMBOL_001"),
        ({"currency": "doge"}, "CURRENCY_001"),
        ({"currency": "USDT"}, "CURRENCY_001"),
        ({"amount": "0"}, "FUND_017"),
        ({"amount": "-1"}, "FUND_017"),
        ({"amount": "1e3"}, "FUND_017"),
        ({"amount": "10."}, "FUND_017"),
        ({"amount": -10}, "FUND_017"),
        ({"amount": True}, "FUND_017"),
        ({"amount": 0}, "FUND_017"),
        ({"amount": "1" * 114}, "FUND_044"),
    ],
)
async def test_business_rules(
    caller: XTCaller, fake: FakeXT, fields: dict[str, Any], code: str
) -> None:
    """Each broken transfer rule is refused with its code and nothing moves."""
    assert error_code(await caller.transfer(caller.body(**fields))) == code
    assert fake.audit == ()


async def test_lever_transfer_with_symbol(caller: XTCaller, fake: FakeXT) -> None:
    """A LEVER transfer with a listed symbol that contains the currency executes."""
    body = caller.body(target="LEVER", currency="btc", symbol="btc_usdt", amount="0.5")
    assert envelope(await caller.transfer(body))["rc"] == 0
    assert fake.audit[0].symbol == "btc_usdt"
    assert fake.balance("margin", "btc") == Decimal("100.5")


async def test_invalid_json_is_refused(caller: XTCaller, fake: FakeXT) -> None:
    """A body that is not a JSON object is refused and moves nothing."""
    for body in ("not json", "[1, 2]"):
        assert error_code(await caller.transfer(body)) == "FUND_017"
    assert fake.audit == ()


async def test_balances_are_exact_decimals(clock: VirtualClock) -> None:
    """Balances move by exact decimal amounts, however many digits they have."""
    tiny = "0." + "0" * 100 + "1"
    balances = {"SPOT": {"usdt": Decimal("1")}}
    fake = FakeXT(api_key=KEY, secret=SECRET, clock=clock, balances=balances)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = XTCaller(http, XT(KEY, SECRET), clock)
        assert envelope(await caller.transfer(caller.body(amount=tiny)))["rc"] == 0
    assert fake.balance("SPOT", "usdt") + fake.balance("FUTURES_U", "usdt") == 1
    assert fake.balance("FUTURES_U", "usdt") == Decimal(tiny)


def test_balances_must_name_xt_accounts() -> None:
    """Starting balances in an account XT does not have are refused."""
    with pytest.raises(ValueError, match="not an XT account"):
        FakeXT(api_key=KEY, secret=SECRET, balances={"OTC": {"usdt": Decimal(1)}})


async def test_balance_endpoint(caller: XTCaller) -> None:
    """GET /v4/balance is signed over its query and reports the spot balance."""
    await caller.transfer(caller.body(amount="1"))
    request = caller.balance_request("usdt")
    result = envelope(await caller.send(request))["result"]
    assert result == {
        "currency": "usdt",
        "availableAmount": "999999",
        "frozenAmount": "0",
        "totalAmount": "999999",
    }


async def test_balance_endpoint_checks_the_query_signature(caller: XTCaller) -> None:
    """A balance query whose currency differs from the signed one fails the signature."""
    request = caller.balance_request("usdt")
    url = request.url.replace("currency=usdt", "currency=btc")
    response = await caller.http.get(url, headers=dict(request.headers))
    assert error_code(response) == "AUTH_103"


async def test_time_endpoint_is_unsigned(caller: XTCaller, fake: FakeXT) -> None:
    """GET /v4/public/time needs no signature and reports the venue clock in ms."""
    fake.skew_ms = 1234
    assert await caller.server_time() == caller.now_ms() + 1234


async def test_balance_endpoint_refuses_unknown_currency(caller: XTCaller) -> None:
    """A balance query for a currency the venue does not list is CURRENCY_001."""
    assert error_code(await caller.send(caller.balance_request("doge"))) == "CURRENCY_001"


async def test_unknown_paths_and_methods(caller: XTCaller) -> None:
    """An unknown path is 404 and a known path with the wrong method 405, neither JSON."""
    assert (await caller.http.get("https://sapi.xt.com/v4/nothing")).status_code == 404
    assert (await caller.http.get("https://sapi.xt.com/v4/balance/transfer")).status_code == 405


async def test_requests_are_recorded_with_times(
    caller: XTCaller, fake: FakeXT, clock: VirtualClock
) -> None:
    """Every request that reached the venue is recorded with the venue clock's time."""
    await caller.server_time()
    clock.advance(7)
    await caller.transfer()
    assert [r.request.path for r in fake.requests] == ["/v4/public/time", "/v4/balance/transfer"]
    assert [r.clock_time for r in fake.requests] == [clock.time() - 7, clock.time()]
    assert all(r.fault is None for r in fake.requests)


def test_repr_hides_the_secret() -> None:
    """The fake's repr never shows its secret."""
    assert SECRET not in repr(FakeXT(api_key=KEY, secret=SECRET))
