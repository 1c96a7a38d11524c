"""FakeHTX through the in-process transport: signing, clock window, business rules, no dedup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from xferkit._exceptions import (
    AuthenticationError,
    InsufficientBalanceError,
    TransferRejectedError,
)
from xferkit._outcomes import NotProcessed, Rejected, Succeeded
from xferkit.testing import (
    Execution,
    FakeHTX,
    FakeTransport,
    FakeVenue,
    FaultPlan,
    VirtualClock,
)
from xferkit.testing._htx import (
    ACCESS_KEY_FAILURE,
    FIRST_TRANSACT_ID,
    FIRST_TRANSFER_ID,
    LEDGER_TRANSFER_TYPES,
    SIGNATURE_FAILURE,
    SUPPORTED_PAIRS,
    TIME_FAILURE,
    signature_matches,
)
from xferkit.venues.htx import ACCOUNTS, HTX, TRANSFER_TYPES
from xferkit.venues.htx import SUPPORTED_PAIRS as CLIENT_PAIRS

from .htx_caller import KEY, SECRET, HTXCaller, to_http_response

UNIFIED = {native: unified for unified, native in ACCOUNTS.items()}


@pytest.fixture
def fake_htx(clock: VirtualClock, plan: FaultPlan) -> FakeHTX:
    """A fake HTX with default balances that knows the test-vector key."""
    return FakeHTX(access_key=KEY, secret=SECRET, clock=clock, faults=plan)


@pytest.fixture
async def htx_http(fake_htx: FakeHTX) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to the fake HTX through the in-process transport."""
    async with httpx.AsyncClient(transport=FakeTransport(fake_htx)) as client:
        yield client


@pytest.fixture
def htx_caller(htx_http: httpx.AsyncClient, clock: VirtualClock) -> HTXCaller:
    """Signs and sends requests to the fake as xferkit's HTX module would."""
    return HTXCaller(htx_http, HTX(KEY, SECRET), clock)


def new_shape(response: httpx.Response) -> dict[str, Any]:
    """The decoded new-shape answer of the transfer endpoint (HTTP 200 for refusals too)."""
    assert response.status_code == 200
    decoded: dict[str, Any] = response.json()
    assert list(decoded) == ["code", "data", "message", "success"]
    return decoded


def refusal_code(response: httpx.Response) -> int:
    """The code of a business refusal, after checking that nothing but a code came back."""
    body = new_shape(response)
    assert body["success"] is False
    assert body["data"] is None
    code: int = body["code"]
    return code


def old_shape(response: httpx.Response) -> tuple[str, str]:
    """The ``err-code`` and ``err-msg`` of a gateway refusal in the old shape."""
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["status", "err-code", "err-msg", "data"]
    assert body["status"] == "error"
    assert body["data"] is None
    return body["err-code"], body["err-msg"]


# -- signature v2 ------------------------------------------------------------------------------

VECTOR_AUTH = (
    "AccessKeyId=e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx&SignatureMethod=HmacSHA256"
    "&SignatureVersion=2&Timestamp=2017-05-11T15%3A19%3A30"
)


@pytest.mark.parametrize(
    ("method", "path", "extra", "signature"),
    [
        (
            "GET",
            "/v1/order/orders",
            "&order-id=1234567890",
            "Nmd8AU8uAe0mkFpxNbiava0aeZzBEtYjCdie1ZYZjoM=",
        ),
        ("POST", "/v2/account/transfer", "", "BVELwKh4mpY/4BiHWJXSi6cSTK9WQrSq7xDTzgrnsc0="),
        (
            "GET",
            "/v2/account/ledger",
            "&accountId=12345&currency=usdt&transactTypes=transfer"
            "&startTime=1494512370000&endTime=1494516000000",
            "5t9+gdl1WfID9ppJ/BQLolagctTgb5DnNxptEfM9uDE=",
        ),
    ],
)
def test_signature_vectors_verify(method: str, path: str, extra: str, signature: str) -> None:
    """The three vectors of htx.md verify in the fake's checker, whatever the parameter order,
    and one changed character in the signature or the host fails."""
    encoded = signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    query = f"{VECTOR_AUTH}{extra}&Signature={encoded}"
    check = {"secret": SECRET, "method": method, "path": path}
    assert signature_matches(host="api.huobi.pro", query=query, **check)
    shuffled = "&".join(reversed(query.split("&")))
    assert signature_matches(host="api.huobi.pro", query=shuffled, **check)
    assert not signature_matches(host="api-aws.huobi.pro", query=query, **check)
    tampered = query.replace(encoded[:4], encoded[:3] + ("A" if encoded[3] != "A" else "B"))
    assert not signature_matches(host="api.huobi.pro", query=tampered, **check)


def test_post_signature_ignores_extra_query_parameters() -> None:
    """A POST signs only the four auth parameters, so anything else in its query is not signed."""
    query = f"{VECTOR_AUTH}&Signature=BVELwKh4mpY%2F4BiHWJXSi6cSTK9WQrSq7xDTzgrnsc0%3D&extra=1"
    assert signature_matches(
        secret=SECRET, method="POST", host="api.huobi.pro", path="/v2/account/transfer", query=query
    )


def test_repeated_parameter_fails_the_signature() -> None:
    """A parameter sent twice cannot be canonicalised, so the signature check fails."""
    query = f"{VECTOR_AUTH}&Signature=BVELwKh4mpY%2F4BiHWJXSi6cSTK9WQrSq7xDTzgrnsc0%3D"
    assert not signature_matches(
        secret=SECRET,
        method="POST",
        host="api.huobi.pro",
        path="/v2/account/transfer",
        query=query + "&SignatureVersion=2",
    )


# -- the transfer ------------------------------------------------------------------------------


async def test_valid_transfer_moves_balances_audit_and_ledger(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """A signed transfer moves the amount, answers HTX's success envelope with the transfer id,
    appears once in the audit and once in the spot ledger under a different transactId."""
    response = await htx_caller.transfer(htx_caller.body(amount=Decimal("12.5")))
    assert response.content == (
        b'{"code":200,"data":' + str(FIRST_TRANSFER_ID).encode() + b',"message":"Succeed",'
        b'"success":true}'
    )
    assert fake_htx.balance("spot", "usdt") == Decimal("999987.5")
    assert fake_htx.balance("usdt_futures", "USDT") == Decimal("1000012.5")
    [execution] = fake_htx.audit
    assert execution == Execution(
        venue="htx",
        biz_id=None,
        from_account="spot",
        to_account="linear-swap",
        currency="usdt",
        amount=Decimal("12.5"),
        transfer_id=str(FIRST_TRANSFER_ID),
        executed_at=execution.executed_at,
    )
    assert execution.executed_at.timestamp() == clock.time()
    [row] = fake_htx.ledger_rows()
    assert row.transact_id == FIRST_TRANSACT_ID != FIRST_TRANSFER_ID
    assert row.to_wire() == {
        "accountId": 10_000_001,
        "currency": "usdt",
        "transactAmt": Decimal("-12.5"),
        "transactType": "transfer",
        "transferType": "spot-to-linear-swap",
        "transactId": FIRST_TRANSACT_ID,
        "transactTime": int(clock.time() * 1000),
        "transferer": fake_htx.account_id("spot"),
        "transferee": fake_htx.account_id("linear-swap"),
    }
    assert fake_htx.account_id("spot") != fake_htx.account_id("linear-swap")


async def test_a_resend_moves_the_money_twice(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """HTX has no idempotency key: the very same request sent twice executes twice."""
    request = htx_caller.htx.transfer_request(htx_caller.body(), htx_caller.now_ms())
    first = new_shape(await htx_caller.send(request))
    second = new_shape(await htx_caller.send(request))
    assert (first["data"], second["data"]) == (FIRST_TRANSFER_ID, FIRST_TRANSFER_ID + 1)
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", "10") == 2
    assert fake_htx.balance("spot", "usdt") == Decimal("999980")
    assert [r.transact_id for r in fake_htx.ledger_rows()] == [
        FIRST_TRANSACT_ID,
        FIRST_TRANSACT_ID + 1,
    ]


async def test_executions_matching_counts_one_movement(
    htx_caller: HTXCaller, fake_htx: FakeHTX
) -> None:
    """Executions are counted per (from, to, currency, amount), by value, native or unified."""
    await htx_caller.transfer(htx_caller.body(amount=Decimal("10")))
    await htx_caller.transfer(htx_caller.body(amount="10.0"))
    await htx_caller.transfer(htx_caller.body(amount=Decimal("5")))
    await htx_caller.transfer(htx_caller.body(source="linear-swap", target="spot"))
    assert fake_htx.executions_matching("spot", "usdt_futures", "USDT", Decimal(10)) == 2
    assert fake_htx.executions_matching("spot", "linear-swap", "usdt", 5) == 1
    assert fake_htx.executions_matching("linear-swap", "spot", "usdt", "10") == 1
    assert fake_htx.executions_matching("spot", "otc", "usdt", "10") == 0


@pytest.mark.parametrize(
    ("amount", "recorded"),
    [
        (Decimal("0.00000001"), Decimal("0.00000001")),
        ("0.12345678", Decimal("0.12345678")),
        (Decimal("7"), Decimal("7")),
        ("7", Decimal("7")),
        (Decimal("1E+2"), Decimal("100")),
    ],
)
async def test_amount_as_number_or_string(
    htx_caller: HTXCaller, fake_htx: FakeHTX, amount: object, recorded: Decimal
) -> None:
    """The amount may be a JSON number or a string; it is read exactly, never via a float."""
    assert new_shape(await htx_caller.transfer(htx_caller.body(amount=amount)))["success"]
    assert fake_htx.audit[0].amount == recorded
    assert fake_htx.balance("spot", "usdt") == Decimal("1000000") - recorded


async def test_amount_keeps_every_digit(clock: VirtualClock) -> None:
    """Balances with many digits move exactly: no float, no rounding on a 28-digit context."""
    balances = {"spot": {"usdt": Decimal("123456789012345678901234567890.12345678")}}
    fake = FakeHTX(access_key=KEY, secret=SECRET, clock=clock, balances=balances)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = HTXCaller(http, HTX(KEY, SECRET), clock)
        body = caller.body(source="spot", target="otc", amount=Decimal("0.00000001"))
        assert new_shape(await caller.transfer(body))["success"]
    assert fake.balance("spot", "usdt") == Decimal("123456789012345678901234567890.12345677")
    assert fake.balance("otc", "usdt") == Decimal("0.00000001")


@pytest.mark.parametrize("pair", sorted(SUPPORTED_PAIRS))
async def test_every_supported_pair_moves(
    htx_caller: HTXCaller, fake_htx: FakeHTX, pair: tuple[str, str]
) -> None:
    """Each supported pair executes and writes its spot ledger row (every pair touches spot)."""
    source, target = pair
    assert new_shape(await htx_caller.transfer(htx_caller.body(source=source, target=target)))[
        "success"
    ]
    assert fake_htx.executions_matching(source, target, "usdt", 10) == 1
    [row] = fake_htx.ledger_rows()
    assert row.transfer_type == LEDGER_TRANSFER_TYPES[pair]
    assert row.transact_amt == (Decimal(10) if target == "spot" else Decimal(-10))
    assert (row.transferer, row.transferee) == (
        fake_htx.account_id(source),
        fake_htx.account_id(target),
    )


def test_pairs_and_transfer_types_agree_with_the_client() -> None:
    """The fake moves exactly the pairs xferkit's HTX module allows, and writes a transferType
    the module recognises for each direction."""
    assert {(ACCOUNTS[a], ACCOUNTS[b]) for a, b in CLIENT_PAIRS} == SUPPORTED_PAIRS
    for (source, target), transfer_type in LEDGER_TRANSFER_TYPES.items():
        assert transfer_type in TRANSFER_TYPES[UNIFIED[source], UNIFIED[target]]


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("spot", "spot"),
        ("linear-swap", "otc"),
        ("swap", "linear-swap"),
        ("futures", "otc"),
        ("linear-swap", "futures"),
        ("swap", "futures"),
        ("futures", "swap"),
    ],
)
async def test_unsupported_pair_is_refused(
    htx_caller: HTXCaller, fake_htx: FakeHTX, source: str, target: str
) -> None:
    """from == to is refused with 10001, any other pair HTX does not move with 10002."""
    body = htx_caller.body(source=source, target=target)
    code = 10001 if source == target else 10002
    assert refusal_code(await htx_caller.transfer(body)) == code
    assert fake_htx.audit == ()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"from": "margin"}, 1315),
        ({"from": "SPOT"}, 1315),
        ({"to": "Linear-Swap"}, 1315),
        ({"to": None}, 504),
        ({"from": None}, 504),
        ({"currency": None}, 504),
        ({"currency": "doge"}, 10000),
        ({"currency": 7}, 10000),
        ({"amount": 0}, 1322),
        ({"amount": "0"}, 1322),
        ({"amount": "-1"}, 1322),
        ({"amount": -5}, 1322),
        ({"amount": "1e2"}, 502),
        ({"amount": "abc"}, 502),
        ({"amount": True}, 502),
        ({"amount": None}, 504),
        ({"margin-account": None}, 504),
        ({"margin-account": "FOO"}, 1012),
        ({"margin-account": "FOO-USDT"}, 1012),
        ({"margin-account": "BTC/USDT"}, 1012),
        ({"margin-account": "BTCUSDT"}, 1012),
        ({"margin-account": 7}, 502),
    ],
)
async def test_bad_parameters_are_refused(
    htx_caller: HTXCaller, fake_htx: FakeHTX, fields: dict[str, object], code: int
) -> None:
    """Each malformed field gets the code HTX's table gives it and moves nothing."""
    body = json.loads(htx_caller.body())
    body.update(fields)
    body = {name: value for name, value in body.items() if value is not None}
    assert refusal_code(await htx_caller.transfer(json.dumps(body))) == code
    assert fake_htx.audit == ()


async def test_exponent_json_number_is_invalid(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """An amount written as a JSON number with an exponent (``1E+2``) is 502, not 100."""
    body = htx_caller.body().replace('"amount":10', '"amount":1E+2')
    assert '"amount":1E+2' in body
    assert refusal_code(await htx_caller.transfer(body)) == 502
    assert fake_htx.audit == ()


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"from": None}, 504, "Lack of parameter"),
        ({"amount": "x"}, 502, "Invalid parameter"),
        ({"to": "spot"}, 10001, "transfer within single business not supported"),
        ({"from": "linear-swap", "to": "otc"}, 10002, "This transfer is not supported"),
        ({"to": "LINEAR-SWAP"}, 1315, "Wrong transfer type"),
        ({"amount": "0"}, 1322, "amount must be > 0"),
        ({"amount": "0.000000001"}, 1331, "precision above 8 digits"),
        ({"amount": "100000000"}, 1301, "Insufficient amount available"),
        ({"currency": "doge"}, 10000, "Currency does not exist"),
        ({"margin-account": "FOO"}, 1012, "account doesn't exist"),
    ],
)
async def test_codes_carry_htx_messages(
    htx_caller: HTXCaller, fields: dict[str, object], code: int, message: str
) -> None:
    """Every refusal carries the code and message of HTX's response-code table."""
    body = json.loads(htx_caller.body())
    body.update(fields)
    body = {name: value for name, value in body.items() if value is not None}
    answer = new_shape(await htx_caller.transfer(json.dumps(body)))
    assert (answer["code"], answer["message"], answer["success"]) == (code, message, False)


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"spot"'])
async def test_body_must_be_a_json_object(htx_caller: HTXCaller, body: str) -> None:
    """A body that is not a JSON object is an invalid parameter (502)."""
    assert refusal_code(await htx_caller.transfer(body)) == 502


async def test_currency_in_either_case(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """``USDT`` is the same currency as ``usdt``; the audit and ledger hold it in lowercase."""
    assert new_shape(await htx_caller.transfer(htx_caller.body(currency="USDT")))["success"]
    assert fake_htx.audit[0].currency == "usdt"
    assert fake_htx.ledger_rows()[0].currency == "usdt"


@pytest.mark.parametrize("margin", ["USDT", "usdt", "BTC-USDT", "btc-usdt", "Btc-Usdt"])
async def test_margin_account_shapes_accepted(
    htx_caller: HTXCaller, fake_htx: FakeHTX, margin: str
) -> None:
    """Cross ``USDT`` and an isolated pair like ``BTC-USDT`` or HTX's own ``btc-usdt`` move."""
    assert new_shape(await htx_caller.transfer(htx_caller.body(margin_account=margin)))["success"]
    assert len(fake_htx.audit) == 1


async def test_margin_account_rules(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """linear-swap takes a margin account; every other pair, coin-margined swap included,
    refuses one as an invalid parameter (502, the simulation's reading: HTX is silent)."""
    assert new_shape(
        await htx_caller.transfer(htx_caller.body(source="linear-swap", target="spot"))
    )["success"]
    for target in ("swap", "otc"):
        body = json.loads(htx_caller.body(target=target))
        body["margin-account"] = "USDT"
        assert refusal_code(await htx_caller.transfer(json.dumps(body))) == 502
    assert len(fake_htx.audit) == 1


@pytest.mark.parametrize(
    "amount", [Decimal("0.000000001"), "0.000000001", "1.000000000", Decimal("1.100000000")]
)
async def test_more_than_eight_decimals_is_1331(
    htx_caller: HTXCaller, fake_htx: FakeHTX, amount: object
) -> None:
    """Nine decimal places as written (trailing zeros count) are refused with 1331."""
    assert refusal_code(await htx_caller.transfer(htx_caller.body(amount=amount))) == 1331
    assert fake_htx.audit == ()


async def test_insufficient_balance_is_1301(clock: VirtualClock) -> None:
    """More than the available balance is refused with 1301; exactly all of it moves."""
    fake = FakeHTX(
        access_key=KEY, secret=SECRET, clock=clock, balances={"spot": {"usdt": Decimal("5")}}
    )
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = HTXCaller(http, HTX(KEY, SECRET), clock)
        refused = new_shape(await caller.transfer(caller.body(amount=Decimal("5.00000001"))))
        assert refused == {
            "code": 1301,
            "data": None,
            "message": "Insufficient amount available",
            "success": False,
        }
        assert fake.balance("spot", "usdt") == Decimal(5)
        assert new_shape(await caller.transfer(caller.body(amount=Decimal("5"))))["success"]
        assert refusal_code(await caller.transfer(caller.body(amount=Decimal("0.1")))) == 1301
    assert fake.balance("spot", "usdt") == 0
    assert fake.balance("linear-swap", "usdt") == Decimal(5)
    assert fake.balance("linear-swap", "btc") == 0
    assert len(fake.audit) == 1


async def test_business_answers_classify_as_the_venue_table_says(
    htx_caller: HTXCaller,
) -> None:
    """xferkit's HTX module reads success, 1301, 1331 and 1305 in the class htx.md gives them."""
    answers = [
        await htx_caller.transfer(htx_caller.body()),
        await htx_caller.transfer(htx_caller.body(amount=Decimal("1E+9"))),
        await htx_caller.transfer(htx_caller.body(amount=Decimal("0.123456789"))),
        await htx_caller.transfer(htx_caller.body(source="otc", target="swap")),
    ]
    succeeded, balance, precision, pair = (
        htx_caller.htx.classify_transfer(to_http_response(a)) for a in answers
    )
    assert succeeded == Succeeded(str(FIRST_TRANSFER_ID))
    for outcome, error in [
        (balance, InsufficientBalanceError),
        (precision, TransferRejectedError),
        (pair, TransferRejectedError),
    ]:
        assert isinstance(outcome, Rejected)
        assert type(outcome.error) is error


async def test_string_numbers(clock: VirtualClock) -> None:
    """With ``string_numbers`` the code and the transfer id arrive as JSON strings, and
    xferkit's HTX module still reads them."""
    fake = FakeHTX(access_key=KEY, secret=SECRET, clock=clock, string_numbers=True)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = HTXCaller(http, HTX(KEY, SECRET), clock)
        ok = await caller.transfer(caller.body())
        refused = await caller.transfer(caller.body(amount=Decimal("0.000000001")))
    assert ok.json() == {
        "code": "200",
        "data": str(FIRST_TRANSFER_ID),
        "message": "Succeed",
        "success": True,
    }
    assert refused.json()["code"] == "1331"
    assert refused.json()["data"] is None
    assert caller.htx.classify_transfer(to_http_response(ok)) == Succeeded(str(FIRST_TRANSFER_ID))
    assert isinstance(caller.htx.classify_transfer(to_http_response(refused)), Rejected)


# -- authentication ----------------------------------------------------------------------------


def lowercase_hex_request(caller: HTXCaller, body: str) -> tuple[str, str]:
    """A transfer URL signed over ``%3a`` (lowercase hex) and the same signed correctly."""
    stamp = caller.htx.transfer_request(body, caller.now_ms()).url
    timestamp = stamp.split("Timestamp=")[1].split("&")[0]
    urls = []
    for encoded in (timestamp.replace("%3A", "%3a"), timestamp):
        query = (
            f"AccessKeyId={KEY}&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp={encoded}"
        )
        text = f"POST\napi.huobi.pro\n/v2/account/transfer\n{query}"
        digest = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()
        signature = base64.b64encode(digest).decode()
        signature = signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        urls.append(f"https://api.huobi.pro/v2/account/transfer?{query}&Signature={signature}")
    return urls[0], urls[1]


async def test_lowercase_hex_fails_the_signature(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """A client that percent-encodes with lowercase hex (``%3a``) and signs that is refused;
    the same request signed over uppercase hex executes."""
    body = htx_caller.body()
    lowercase, uppercase = lowercase_hex_request(htx_caller, body)
    assert "%3a" in lowercase
    headers = {"content-type": "application/json"}
    refused = await htx_caller.http.post(lowercase, content=body, headers=headers)
    assert old_shape(refused) == ("api-signature-not-valid", SIGNATURE_FAILURE)
    assert fake_htx.audit == ()
    accepted = await htx_caller.http.post(uppercase, content=body, headers=headers)
    assert new_shape(accepted)["success"]


async def test_bad_signature_is_refused_in_the_old_shape(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """A request signed with another secret gets the gateway's verification failure."""
    wrong = HTXCaller(htx_caller.http, HTX(KEY, "not-the-secret"), clock)
    response = await wrong.transfer()
    assert response.json() == {
        "status": "error",
        "err-code": "api-signature-not-valid",
        "err-msg": "Signature not valid: Verification failure [校验失败]",
        "data": None,
    }
    outcome = htx_caller.htx.classify_transfer(to_http_response(response))
    assert isinstance(outcome, NotProcessed)
    assert isinstance(outcome.error, AuthenticationError)
    assert not outcome.resync_clock
    assert fake_htx.audit == ()


async def test_body_is_not_signed(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """HTX signs only the auth parameters of a POST: a different body under the same signature
    still executes (which is why the body must be fixed before the first send)."""
    request = htx_caller.htx.transfer_request(htx_caller.body(), htx_caller.now_ms())
    other = htx_caller.body(amount=Decimal("3"))
    response = await htx_caller.http.post(request.url, content=other, headers=dict(request.headers))
    assert new_shape(response)["success"]
    assert fake_htx.audit[0].amount == Decimal(3)


async def test_signature_covers_the_host(htx_caller: HTXCaller, clock: VirtualClock) -> None:
    """A request signed for api-aws.huobi.pro but sent to api.huobi.pro fails verification."""
    aws = HTX(KEY, SECRET, base_url="https://api-aws.huobi.pro")
    request = aws.transfer_request(htx_caller.body(), htx_caller.now_ms())
    url = request.url.replace("api-aws.huobi.pro", "api.huobi.pro")
    response = await htx_caller.http.post(url, content=request.body, headers=dict(request.headers))
    assert old_shape(response) == ("api-signature-not-valid", SIGNATURE_FAILURE)


@pytest.mark.parametrize(
    ("offset_ms", "accepted"),
    [(-300_000, True), (300_000, True), (-301_000, False), (301_000, False)],
)
async def test_timestamp_window_is_five_minutes(
    htx_caller: HTXCaller, fake_htx: FakeHTX, offset_ms: int, accepted: bool
) -> None:
    """Timestamps up to five minutes either side of the venue's clock pass; beyond, the clock
    error comes back, and xferkit's module reads it as "resync and resend"."""
    response = await htx_caller.transfer(timestamp_ms=htx_caller.now_ms() + offset_ms)
    if accepted:
        assert new_shape(response)["success"]
        return
    assert old_shape(response) == ("api-signature-not-valid", TIME_FAILURE)
    assert "Invalid submission time or incorrect time format" in TIME_FAILURE
    outcome = htx_caller.htx.classify_transfer(to_http_response(response))
    assert isinstance(outcome, NotProcessed)
    assert outcome.resync_clock
    assert fake_htx.audit == ()


async def test_window_follows_the_venues_skewed_clock(
    htx_caller: HTXCaller, fake_htx: FakeHTX
) -> None:
    """With the venue ten minutes ahead, local timestamps fail and server-time ones pass."""
    fake_htx.skew_ms = 600_000
    assert old_shape(await htx_caller.transfer())[1] == TIME_FAILURE
    server_ms = await htx_caller.server_time()
    assert server_ms == htx_caller.now_ms() + 600_000
    assert new_shape(await htx_caller.transfer(timestamp_ms=server_ms))["success"]


@pytest.mark.parametrize(
    "timestamp", ["2023-11-14T22:13:20.000", "2023-11-14 22:13:20", "2023-11-14T22:13:20Z", ""]
)
async def test_malformed_timestamp_is_the_time_error(htx_caller: HTXCaller, timestamp: str) -> None:
    """A Timestamp not in ``YYYY-MM-DDThh:mm:ss`` gets the invalid-submission-time error."""
    request = htx_caller.htx.transfer_request(htx_caller.body(), htx_caller.now_ms())
    url = request.url.replace("2023-11-14T22%3A13%3A20", timestamp.replace(":", "%3A"))
    assert url != request.url
    response = await htx_caller.http.post(url, content=request.body)
    assert old_shape(response) == ("api-signature-not-valid", TIME_FAILURE)


async def test_unknown_key_and_missing_key(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """An unknown access key is "Incorrect Access key"; a request without one needs a login."""
    stranger = HTXCaller(htx_caller.http, HTX("someone-else", SECRET), clock)
    assert old_shape(await stranger.transfer()) == ("api-signature-not-valid", ACCESS_KEY_FAILURE)
    request = htx_caller.htx.transfer_request(htx_caller.body(), htx_caller.now_ms())
    url = request.url.replace(f"AccessKeyId={KEY}&", "")
    code, _ = old_shape(await htx_caller.http.post(url, content=request.body))
    assert code == "login-required"
    assert fake_htx.audit == ()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("SignatureVersion=2", "SignatureVersion=1"),
        ("SignatureMethod=HmacSHA256", "SignatureMethod=HmacSHA1"),
    ],
)
async def test_other_auth_parameters_are_checked(
    htx_caller: HTXCaller, fake_htx: FakeHTX, old: str, new: str
) -> None:
    """A wrong signature version or method fails verification."""
    request = htx_caller.htx.transfer_request(htx_caller.body(), htx_caller.now_ms())
    assert old in request.url
    response = await htx_caller.http.post(request.url.replace(old, new), content=request.body)
    assert old_shape(response) == ("api-signature-not-valid", SIGNATURE_FAILURE)
    assert fake_htx.audit == ()


async def test_missing_signature_needs_a_login(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """A request without ``Signature`` is answered ``login-required``, as HTX's table says."""
    request = htx_caller.htx.transfer_request(htx_caller.body(), htx_caller.now_ms())
    url = request.url.replace("&Signature=", "&NotSignature=")
    code, _ = old_shape(await htx_caller.http.post(url, content=request.body))
    assert code == "login-required"
    assert fake_htx.audit == ()


# -- accounts, time and routing ----------------------------------------------------------------


async def test_accounts_endpoint_lists_spot(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """The signed accounts list names the spot account, which xferkit's module picks out."""
    response = await htx_caller.accounts()
    assert response.json() == {
        "status": "ok",
        "data": [
            {"id": 10_000_001, "type": "spot", "subtype": "", "state": "working"},
            {"id": fake_htx.account_id("otc"), "type": "otc", "subtype": "", "state": "working"},
        ],
    }
    assert htx_caller.htx.parse_spot_account_id(to_http_response(response)) == "10000001"
    wrong = HTXCaller(htx_caller.http, HTX(KEY, "bad"), clock)
    assert old_shape(await wrong.accounts())[0] == "api-signature-not-valid"


async def test_spot_account_id_is_configurable(clock: VirtualClock) -> None:
    """A fake built with another spot account id lists and ledgers under that id."""
    fake = FakeHTX(access_key=KEY, secret=SECRET, clock=clock, spot_account_id=42)
    async with httpx.AsyncClient(transport=FakeTransport(fake)) as http:
        caller = HTXCaller(http, HTX(KEY, SECRET), clock)
        answer = to_http_response(await caller.accounts())
        await caller.transfer(caller.body())
        page = await caller.ledger(accountId=42)
    assert caller.htx.parse_spot_account_id(answer) == "42"
    assert [row["accountId"] for row in page["data"]] == [42]


async def test_time_endpoint_reports_the_skewed_clock(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """The unsigned time endpoint answers the venue's clock, skew included, in ms."""
    response = await htx_caller.send(htx_caller.htx.time_request())
    assert response.json() == {"status": "ok", "data": int(clock.time() * 1000)}
    fake_htx.skew_ms = -1234
    assert await htx_caller.server_time() == int(clock.time() * 1000) - 1234


async def test_unknown_path_and_wrong_method(htx_caller: HTXCaller) -> None:
    """An unknown path is 404; a known path with the wrong method is 405."""
    assert (await htx_caller.http.get("https://api.huobi.pro/v1/nothing")).status_code == 404
    get_transfer = await htx_caller.http.get("https://api.huobi.pro/v2/account/transfer")
    assert get_transfer.status_code == 405
    post_time = await htx_caller.http.post("https://api.huobi.pro/v1/common/timestamp")
    assert post_time.status_code == 405


def test_constructor_checks_its_arguments() -> None:
    """Balances must name HTX accounts with lowercase currencies and non-negative Decimals,
    and a rate limit must be positive."""
    with pytest.raises(ValueError, match="not an HTX account"):
        FakeHTX(access_key=KEY, secret=SECRET, balances={"FUTURES_U": {}})
    with pytest.raises(ValueError, match="lowercase"):
        FakeHTX(access_key=KEY, secret=SECRET, balances={"spot": {"USDT": Decimal(1)}})
    with pytest.raises(ValueError, match="non-negative"):
        FakeHTX(access_key=KEY, secret=SECRET, balances={"spot": {"usdt": Decimal(-1)}})
    with pytest.raises(ValueError, match="rate_limit"):
        FakeHTX(access_key=KEY, secret=SECRET, rate_limit=0)
    fake = FakeHTX(access_key=KEY, secret=SECRET, balances={"otc": {"eth": Decimal(2)}})
    assert isinstance(fake, FakeVenue)
    assert fake.balance("otc", "eth") == 2
    assert fake.balance("spot", "eth") == 0
    with pytest.raises(ValueError, match="not an HTX account"):
        fake.balance("margin", "usdt")
    assert "not-the" not in repr(FakeHTX(access_key=KEY, secret="not-the-secret"))
