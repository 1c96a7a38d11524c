"""Every case of the venue pages' "faithful simulation" sections, in-process and over loopback.

shared/venues/xt.md ("What a faithful simulation must also accept and answer") and
shared/venues/htx.md ("Codes a faithful simulation answers") list what the venues accept and
answer; each case here runs once through `FakeTransport` and once through a real socket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from anyio.from_thread import start_blocking_portal

from xferkit.testing import (
    FakeHTX,
    FakeTransport,
    FakeXT,
    Fault,
    FaultPlan,
    LoopbackServer,
    VirtualClock,
    serve,
)
from xferkit.testing._htx import ACCESS_KEY_FAILURE, TIME_FAILURE, TIME_FAILURE_CHINESE
from xferkit.testing._xt import ALGORITHMS, xt_signature
from xferkit.venues.htx import HTX
from xferkit.venues.xt import XT, sign

from .htx_caller import KEY as HTX_KEY
from .htx_caller import SECRET as HTX_SECRET
from .htx_caller import HTXCaller
from .xt_caller import KEY as XT_KEY
from .xt_caller import SECRET as XT_SECRET

DAY_MS = 24 * 3600 * 1000


class Venues:
    """Both fakes on one virtual clock, and how to reach them (in-process or loopback)."""

    def __init__(self, http: httpx.AsyncClient, xt: FakeXT, htx: FakeHTX, clock: VirtualClock):
        self.http = http
        self.xt = xt
        self.htx = htx
        self.clock = clock
        self.xt_url = "https://sapi.xt.com"
        self.htx_url = "https://api.huobi.pro"

    def htx_caller(self, secret: str = HTX_SECRET, key: str = HTX_KEY) -> HTXCaller:
        """A caller signing with xferkit's HTX module for the host this wire reaches."""
        return HTXCaller(self.http, HTX(key, secret, base_url=self.htx_url), self.clock)

    def now_ms(self) -> int:
        """The callers' clock in ms (the fakes' clock before skew)."""
        return int(self.clock.time() * 1000)

    async def xt_send(
        self,
        body: str | None = None,
        *,
        prefix: str = "validate-",
        algorithm: str = "HmacSHA256",
        secret: str = XT_SECRET,
        timestamp_ms: int | None = None,
        signed_prefix: str | None = None,
    ) -> dict[str, Any]:
        """POST an XT transfer with the given header spelling and algorithm; the envelope."""
        text = body if body is not None else transfer_body()
        stamp = str(self.now_ms() if timestamp_ms is None else timestamp_ms)
        signature = xt_signature(
            secret=secret,
            prefix=signed_prefix or prefix,
            algorithm=algorithm,
            api_key=XT_KEY,
            recv_window="5000",
            timestamp=stamp,
            method="POST",
            path="/v4/balance/transfer",
            query="",
            body=text,
        )
        headers = {
            f"{prefix}algorithms": algorithm,
            f"{prefix}appkey": XT_KEY,
            f"{prefix}recvwindow": "5000",
            f"{prefix}timestamp": stamp,
            f"{prefix}signature": signature,
            "content-type": "application/json",
        }
        url = f"{self.xt_url}/v4/balance/transfer"
        response = await self.http.post(url, headers=headers, content=text.encode())
        assert response.status_code == 200
        decoded: dict[str, Any] = response.json()
        return decoded


def transfer_body(biz_id: str = "biz-1", amount: str = '"10"', **fields: str) -> str:
    """An XT transfer body with ``amount`` written exactly as given (JSON text)."""
    head = {"bizId": biz_id, "from": "SPOT", "to": "FUTURES_U", "currency": "usdt", **fields}
    return json.dumps(head, separators=(",", ":"))[:-1] + f',"amount":{amount}}}'


@pytest.fixture(params=["in-process", "loopback"])
def wire(
    request: pytest.FixtureRequest, clock: VirtualClock
) -> Iterator[tuple[FakeXT, FakeHTX, LoopbackServer | None]]:
    """Both fakes, served on loopback by a portal thread for the loopback run."""
    xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, clock=clock)
    htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, clock=clock)
    if request.param == "in-process":
        yield xt, htx, None
        return
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(xt, htx)) as server,
    ):
        yield xt, htx, server


@pytest.fixture
async def venues(
    wire: tuple[FakeXT, FakeHTX, LoopbackServer | None], clock: VirtualClock
) -> AsyncIterator[Venues]:
    """Both fakes reached through `FakeTransport` or through a real loopback socket."""
    xt, htx, server = wire
    if server is None:
        async with httpx.AsyncClient(transport=FakeTransport(xt, htx)) as http:
            yield Venues(http, xt, htx, clock)
        return
    async with httpx.AsyncClient() as http:
        wired = Venues(http, xt, htx, clock)
        wired.xt_url, wired.htx_url = server.url("xt"), server.url("htx")
        yield wired


# -- XT ------------------------------------------------------------------------------------------


def test_fake_signer_agrees_with_xferkits_for_the_documented_headers() -> None:
    """The fake's signer, for validate-* and HmacSHA256, is exactly xferkit's own ``sign``."""
    body = transfer_body()
    ours = sign(
        api_key=XT_KEY,
        secret=XT_SECRET,
        method="POST",
        path="/v4/balance/transfer",
        timestamp_ms=1641446237201,
        recv_window_ms=5000,
        body=body,
    )
    fakes = xt_signature(
        secret=XT_SECRET,
        prefix="validate-",
        algorithm="HmacSHA256",
        api_key=XT_KEY,
        recv_window="5000",
        timestamp="1641446237201",
        method="POST",
        path="/v4/balance/transfer",
        query="",
        body=body,
    )
    assert ours == fakes


@pytest.mark.parametrize("prefix", ["validate-", "xt-validate-"])
async def test_xt_accepts_both_header_spellings(venues: Venues, prefix: str) -> None:
    """Headers spelled validate-* or xt-validate-*, signed with that spelling, move money."""
    answer = await venues.xt_send(prefix=prefix)
    assert (answer["rc"], answer["mc"], answer["ma"]) == (0, "SUCCESS", [])
    assert len(venues.xt.audit) == 1


@pytest.mark.parametrize(("sent", "signed"), [("xt-validate-", "validate-"), ("validate-", "xt-")])
async def test_xt_signs_with_the_spelling_sent(venues: Venues, sent: str, signed: str) -> None:
    """A signature over the other spelling's names fails with AUTH_103."""
    answer = await venues.xt_send(prefix=sent, signed_prefix=signed)
    assert (answer["rc"], answer["mc"]) == (1, "AUTH_103")
    assert venues.xt.audit == ()


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
async def test_xt_accepts_every_documented_algorithm(venues: Venues, algorithm: str) -> None:
    """Each documented HmacSHA algorithm verifies with its own digest."""
    answer = await venues.xt_send(algorithm=algorithm)
    assert answer["mc"] == "SUCCESS"


def test_xt_algorithms_are_the_documented_six() -> None:
    """The algorithms are exactly XT's six, each the lowercase hex HMAC of its digest."""
    assert set(ALGORITHMS) == {
        "HmacMD5",
        "HmacSHA1",
        "HmacSHA224",
        "HmacSHA256",
        "HmacSHA384",
        "HmacSHA512",
    }
    digest = hmac.new(b"k", b"m", ALGORITHMS["HmacSHA384"]).hexdigest()
    assert digest == hmac.new(b"k", b"m", hashlib.sha384).hexdigest()


async def test_xt_unknown_algorithm_is_auth_006(venues: Venues) -> None:
    """An algorithm XT does not document is AUTH_006 (the fake cannot sign it: send a SHA256
    signature under another name)."""
    stamp = str(venues.now_ms())
    headers = {
        "validate-algorithms": "HmacSHA3",
        "validate-appkey": XT_KEY,
        "validate-recvwindow": "5000",
        "validate-timestamp": stamp,
        "validate-signature": "0" * 64,
    }
    url = f"{venues.xt_url}/v4/balance/transfer"
    response = await venues.http.post(url, headers=headers, content=transfer_body().encode())
    assert response.json()["mc"] == "AUTH_006"


@pytest.mark.parametrize(
    ("amount", "moved"),
    [('"10"', "10"), ("10", "10"), ("10.25", "10.25"), ('"0.00000001"', "0.00000001")],
)
async def test_xt_amount_as_string_or_number(venues: Venues, amount: str, moved: str) -> None:
    """An amount as a JSON string or a JSON number (XT.Net) is read exactly."""
    answer = await venues.xt_send(transfer_body(amount=amount))
    assert answer["mc"] == "SUCCESS"
    assert venues.xt.audit[0].amount == Decimal(moved)


@pytest.mark.parametrize("amount", ["1e1", "1E+1", '"1e1"', "-1", "0", '"10."', "true"])
async def test_xt_amount_must_be_a_plain_decimal(venues: Venues, amount: str) -> None:
    """An exponent, a sign, zero or a non-number is FUND_017 with ma naming nothing else."""
    answer = await venues.xt_send(transfer_body(amount=amount))
    assert (answer["rc"], answer["mc"], answer["result"]) == (1, "FUND_017", None)
    assert isinstance(answer["ma"], list)
    assert venues.xt.audit == ()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (transfer_body(amount='"99999999"'), "FUND_002"),
        (transfer_body(to="SPOT"), "FUND_015"),
        (transfer_body(currency="doge"), "CURRENCY_001"),
    ],
)
async def test_xt_ma_holds_arguments_not_sentences(venues: Venues, body: str, code: str) -> None:
    """Refusals carry ``ma`` as a list of message arguments, here empty."""
    answer = await venues.xt_send(body)
    assert answer == {"rc": 1, "mc": code, "ma": [], "result": None}


@pytest.mark.parametrize("code", ["TRANSFER_001", "FUND_001"])
async def test_xt_duplicate_code_is_chosen(clock: VirtualClock, code: str) -> None:
    """A reused bizId is answered with the configured duplicate code and ``result: null``."""
    xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, clock=clock, duplicate_code=code)
    htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, clock=clock)
    async with httpx.AsyncClient(transport=FakeTransport(xt)) as http:
        wired = Venues(http, xt, htx, clock)
        assert (await wired.xt_send())["mc"] == "SUCCESS"
        assert await wired.xt_send() == {"rc": 1, "mc": code, "ma": [], "result": None}
    assert len(xt.audit) == 1


async def test_xt_duplicate_over_loopback(venues: Venues) -> None:
    """Over either wire the default duplicate answer is TRANSFER_001 with ``result: null``."""
    await venues.xt_send()
    assert await venues.xt_send() == {"rc": 1, "mc": "TRANSFER_001", "ma": [], "result": None}


def test_xt_duplicate_code_is_validated() -> None:
    """Only XT's two duplicate codes can be chosen."""
    with pytest.raises(ValueError, match="duplicate_code"):
        FakeXT(api_key=XT_KEY, secret=XT_SECRET, duplicate_code="AUTH_001")


async def test_xt_corrupted_secret_and_stale_clock(venues: Venues) -> None:
    """A wrong secret is AUTH_103; a timestamp 20 s behind is AUTH_105."""
    assert (await venues.xt_send(secret=XT_SECRET + "x"))["mc"] == "AUTH_103"
    stale = venues.now_ms() - 20_000
    assert (await venues.xt_send(prefix="xt-validate-", timestamp_ms=stale))["mc"] == "AUTH_105"
    assert venues.xt.audit == ()


async def test_xt_balances_lists_spot_assets(venues: Venues) -> None:
    """GET /v4/balances (ccxt's balance call) lists every spot asset, signed either way."""
    caller_xt = XT(XT_KEY, XT_SECRET, base_url=venues.xt_url)
    stamp = venues.now_ms()
    signature = xt_signature(
        secret=XT_SECRET,
        prefix="xt-validate-",
        algorithm="HmacSHA256",
        api_key=XT_KEY,
        recv_window="5000",
        timestamp=str(stamp),
        method="GET",
        path="/v4/balances",
        query="",
        body="",
    )
    headers = {
        "xt-validate-algorithms": "HmacSHA256",
        "xt-validate-appkey": XT_KEY,
        "xt-validate-recvwindow": "5000",
        "xt-validate-timestamp": str(stamp),
        "xt-validate-signature": signature,
    }
    response = await venues.http.get(f"{caller_xt.base_url}/v4/balances", headers=headers)
    assets = {a["currency"]: a["availableAmount"] for a in response.json()["result"]["assets"]}
    assert assets == {"btc": "100", "usdt": "1000000"}


# -- HTX -----------------------------------------------------------------------------------------


def htx_body(**fields: object) -> str:
    """A spot -> linear-swap body with ``fields`` replaced (``None`` removes one)."""
    body: dict[str, object] = {
        "from": "spot",
        "to": "linear-swap",
        "currency": "usdt",
        "amount": "10",
        "margin-account": "USDT",
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None})


HTX_TABLE = [
    ("missing parameter", {"amount": None}, 504, "Lack of parameter"),
    ("invalid parameter", {"amount": "1e3"}, 502, "Invalid parameter"),
    ("from == to", {"to": "spot"}, 10001, "transfer within single business not supported"),
    (
        "linear-swap -> otc",
        {"from": "linear-swap", "to": "otc"},
        10002,
        "This transfer is not supported",
    ),
    (
        "swap -> futures",
        {"from": "swap", "to": "futures", "margin-account": None},
        10002,
        "This transfer is not supported",
    ),
    (
        "futures -> swap",
        {"from": "futures", "to": "swap", "margin-account": None},
        10002,
        "This transfer is not supported",
    ),
    ("unknown account", {"to": "LINEAR-SWAP"}, 1315, "Wrong transfer type"),
    ("amount 0", {"amount": "0"}, 1322, "amount must be > 0"),
    ("amount negative", {"amount": -3}, 1322, "amount must be > 0"),
    ("nine decimals", {"amount": "1.000000000"}, 1331, "precision above 8 digits"),
    ("insufficient", {"amount": "10000000"}, 1301, "Insufficient amount available"),
    ("unknown currency", {"currency": "doge"}, 10000, "Currency does not exist"),
    ("margin-account missing", {"margin-account": None}, 504, "Lack of parameter"),
    ("isolated pair FOO", {"margin-account": "FOO"}, 1012, "account doesn't exist"),
    ("isolated pair FOO-USDT", {"margin-account": "FOO-USDT"}, 1012, "account doesn't exist"),
]


@pytest.mark.parametrize(
    ("fields", "code", "message"), [row[1:] for row in HTX_TABLE], ids=[r[0] for r in HTX_TABLE]
)
async def test_htx_answers_its_code_table(
    venues: Venues, fields: dict[str, object], code: int, message: str
) -> None:
    """Each bad transfer gets HTX's code and message, HTTP 200, and moves nothing."""
    response = await venues.htx_caller().transfer(htx_body(**fields))
    assert response.status_code == 200
    assert response.json() == {"code": code, "data": None, "message": message, "success": False}
    assert venues.htx.audit == ()


@pytest.mark.parametrize("margin", ["USDT", "BTC-USDT", "btc-usdt"])
async def test_htx_margin_account_shapes(venues: Venues, margin: str) -> None:
    """``USDT``, ``BTC-USDT`` and HTX's lowercase ``btc-usdt`` all move money."""
    response = await venues.htx_caller().transfer(htx_body(**{"margin-account": margin}))
    assert response.json()["success"] is True


async def test_htx_amount_as_json_number(venues: Venues) -> None:
    """An amount sent as a JSON number (as ccxt does, ``10.0``) is read exactly."""
    body = htx_body(amount="__N__").replace('"__N__"', "10.0")
    response = await venues.htx_caller().transfer(body)
    assert response.json()["success"] is True
    assert venues.htx.audit[0].amount == Decimal("10.0")


async def test_htx_get_with_a_body_is_403(venues: Venues) -> None:
    """A GET that carries a body is refused with HTTP 403 before anything else."""
    request = venues.htx_caller().htx.accounts_request(venues.now_ms())
    response = await venues.http.request("GET", request.url, content=b"{}")
    assert response.status_code == 403


async def test_htx_missing_key_or_signature_needs_a_login(venues: Venues) -> None:
    """Without AccessKeyId, or without Signature, the answer is ``login-required``."""
    caller = venues.htx_caller()
    request = caller.htx.accounts_request(venues.now_ms())
    for old, new in ((f"AccessKeyId={HTX_KEY}&", ""), ("&Signature=", "&X=")):
        response = await venues.http.get(request.url.replace(old, new))
        assert response.json()["err-code"] == "login-required"


async def test_htx_unknown_access_key(venues: Venues) -> None:
    """An unknown access key is api-signature-not-valid "Incorrect Access key"."""
    answer = (await venues.htx_caller(key="someone-else").accounts()).json()
    assert (answer["err-code"], answer["err-msg"]) == (
        "api-signature-not-valid",
        ACCESS_KEY_FAILURE,
    )


async def test_htx_corrupted_secret(venues: Venues) -> None:
    """A request signed with a corrupted secret is api-signature-not-valid."""
    answer = (await venues.htx_caller(secret=HTX_SECRET + "x").accounts()).json()
    assert answer["err-code"] == "api-signature-not-valid"


@pytest.mark.parametrize("offset_s", [-400, 400])
async def test_htx_clock_outside_five_minutes_english(venues: Venues, offset_s: int) -> None:
    """A timestamp 400 s off either way gets the English time message."""
    stamp = venues.now_ms() + offset_s * 1000
    answer = (await venues.htx_caller().transfer(htx_body(), timestamp_ms=stamp)).json()
    assert (answer["err-code"], answer["err-msg"]) == ("api-signature-not-valid", TIME_FAILURE)
    assert "Invalid submission time or incorrect time format" in answer["err-msg"]


async def test_htx_clock_message_chinese_only(clock: VirtualClock) -> None:
    """``time_message="chinese"`` answers the older deployments' Chinese-only wording."""
    htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, clock=clock, time_message="chinese")
    async with httpx.AsyncClient(transport=FakeTransport(htx)) as http:
        caller = HTXCaller(http, HTX(HTX_KEY, HTX_SECRET), clock)
        stamp = caller.now_ms() - 400_000
        answer = (await caller.transfer(timestamp_ms=stamp)).json()
    assert answer["err-msg"] == TIME_FAILURE_CHINESE
    assert "Invalid" not in answer["err-msg"]
    with pytest.raises(ValueError, match="time_message"):
        FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, time_message="french")


async def _transfers(venues: Venues, count: int) -> None:
    """``count`` transfers out of spot of 1, 2, 3... usdt, one virtual second apart."""
    caller = venues.htx_caller()
    for n in range(1, count + 1):
        assert (await caller.transfer(htx_body(amount=str(n)))).json()["success"]
        venues.clock.advance(1)


async def test_htx_ledger_newest_first_with_next_id(venues: Venues) -> None:
    """Rows come newest first; nextId passed back as fromId continues with older rows."""
    await _transfers(venues, 5)
    caller = venues.htx_caller()
    first = await caller.ledger(limit=2)
    second = await caller.ledger(limit=2, fromId=first["nextId"])
    amounts = [r["transactAmt"] for r in first["data"] + second["data"]]
    assert amounts == [-5, -4, -3, -2]
    assert b'"transactAmt":-5,' in (await caller.send(caller.ledger_request({"limit": 1}))).content


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"fromId": 1}, 2002),
        ({"startTime": "future"}, 2002),
        ({"startTime": "old"}, 2002),
        ({"startTime": "eleven days"}, 2002),
        ({"accountId": 42}, 1002),
    ],
)
async def test_htx_ledger_refusals(venues: Venues, query: dict[str, object], code: int) -> None:
    """fromId naming no row, a future or too-old start, an 11-day window: 2002; another
    user's account: 1002."""
    now = venues.htx.server_time_ms()
    starts = {"future": (now + 1000, now + 2000), "old": (now - 181 * DAY_MS, now - 180 * DAY_MS)}
    starts["eleven days"] = (now - 11 * DAY_MS, now)
    params: dict[str, str | int] = {k: v for k, v in query.items() if k != "startTime"}
    if "startTime" in query:
        params["startTime"], params["endTime"] = starts[str(query["startTime"])]
    page = await venues.htx_caller().ledger(**params)
    assert (page["code"], page["ok"]) == (code, False)


@pytest.mark.parametrize(
    ("source", "target", "spelling"),
    [
        ("spot", "linear-swap", "spot-to-linear-swap"),
        ("linear-swap", "spot", "linear-swap-to-spot"),
        ("spot", "swap", "dm-spot-to-swap"),
        ("swap", "spot", "dm-swap-to-spot"),
        ("spot", "futures", "spot-to-futures"),
        ("futures", "spot", "futures-to-spot"),
        ("spot", "otc", "spot-to-otc"),
        ("otc", "spot", "otc-to-spot"),
    ],
)
async def test_htx_ledger_transfer_type_spellings(
    venues: Venues, source: str, target: str, spelling: str
) -> None:
    """Each documented pair writes its row with HTX's transferType spelling."""
    margin = "USDT" if "linear-swap" in (source, target) else None
    body = htx_body(**{"from": source, "to": target, "margin-account": margin})
    assert (await venues.htx_caller().transfer(body)).json()["success"]
    [row] = (await venues.htx_caller().ledger())["data"]
    assert row["transferType"] == spelling
    assert row["transactAmt"] == (10 if target == "spot" else -10)


async def test_htx_transient_failure_after_commit(venues: Venues) -> None:
    """The timed-out fault answers 1321 "Transfer failed. Please try again later" after the
    transfer really executed (ambiguous on HTX)."""
    plan = FaultPlan()
    plan.force(Fault.TIMEOUT_CODE_AFTER)
    venues.htx.faults = plan
    answer = (await venues.htx_caller().transfer(htx_body())).json()
    assert answer == {
        "code": 1321,
        "data": None,
        "message": "Transfer failed. Please try again later",
        "success": False,
    }
    assert len(venues.htx.audit) == 1


async def test_xt_timed_out_code_after_commit(venues: Venues) -> None:
    """The timed-out fault answers XT's TRANSFER_007 with ``ma: []`` after executing."""
    plan = FaultPlan()
    plan.force(Fault.TIMEOUT_CODE_AFTER)
    venues.xt.faults = plan
    assert await venues.xt_send() == {"rc": 1, "mc": "TRANSFER_007", "ma": [], "result": None}
    assert len(venues.xt.audit) == 1
