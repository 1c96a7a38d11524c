"""HTX input validation: bad input is refused before any I/O; good input has one canonical form."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xferkit
from xferkit import HTX, InvalidRequestError
from xferkit.venues.htx import MIN_LEDGER_MARGIN_SECONDS, MIN_SETTLE_SECONDS

ACCESS_KEY = "htx-access-key-for-validation"
SECRET = "htx-validation-secret-do-not-leak"

GOOD: dict[str, Any] = {
    "currency": "usdt",
    "amount": "10",
    "from_account": "spot",
    "to_account": "usdt_futures",
}

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Harness:
    """A real Client over a MockTransport that counts every request it is asked to send."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.journal = xferkit.MemoryJournal()

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/common/timestamp":
            return httpx.Response(200, json={"status": "ok", "data": int(time.time() * 1000)})
        # A definitive refusal, so a request that does get through settles at once.
        return httpx.Response(
            200,
            json={
                "code": 1301,
                "data": None,
                "message": "Insufficient amount available",
                "success": False,
            },
        )

    async def assert_refused(self, client: xferkit.Client, **kwargs: Any) -> None:
        with pytest.raises(InvalidRequestError) as excinfo:
            await client.transfer("htx", **kwargs)
        assert isinstance(excinfo.value, ValueError)
        assert self.requests == []
        assert await self.journal.list() == []


@contextlib.asynccontextmanager
async def harness() -> AsyncIterator[tuple[Harness, xferkit.Client]]:
    h = Harness()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(h.handler)) as http,
        xferkit.Client(HTX(ACCESS_KEY, SECRET), journal=h.journal, http_client=http) as client,
    ):
        yield h, client


async def refused(**overrides: Any) -> None:
    """Assert that transfer() with GOOD updated by overrides is refused without any I/O."""
    async with harness() as (h, client):
        await h.assert_refused(client, **{**GOOD, **overrides})


# -- explicit bad inputs ------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, dict[str, Any]]] = [
    # precision: HTX takes at most 8 decimal places (code 1331 beyond)
    ("9 decimals string", {"amount": "0.000000001"}),
    ("9 decimals Decimal", {"amount": Decimal("1.123456789")}),
    ("1E-9 Decimal", {"amount": Decimal("1E-9")}),
    ("9 decimals with trailing zeros", {"amount": "0.0000000010"}),
    ("many decimals", {"amount": "10.12345678901234567890"}),
    # floats
    ("float amount", {"amount": 1.5}),
    ("integral float amount", {"amount": 10.0}),
    ("tiny float amount", {"amount": 1e-8}),
    # pairs HTX does not move between
    ("otc -> usdt_futures", {"from_account": "otc", "to_account": "usdt_futures"}),
    ("usdt_futures -> otc", {"from_account": "usdt_futures", "to_account": "otc"}),
    ("linear-swap -> swap", {"from_account": "linear-swap", "to_account": "swap"}),
    ("swap -> linear-swap", {"from_account": "swap", "to_account": "linear-swap"}),
    ("usdt_futures -> futures", {"from_account": "usdt_futures", "to_account": "futures"}),
    ("otc -> futures", {"from_account": "otc", "to_account": "futures"}),
    ("coin_futures -> otc", {"from_account": "coin_futures", "to_account": "otc"}),
    ("otc -> coin_futures", {"from_account": "otc", "to_account": "coin_futures"}),
    # undocumented, and the spot ledger could never settle a lost answer: refused up front
    ("coin_futures -> futures", {"from_account": "coin_futures", "to_account": "futures"}),
    ("futures -> coin_futures", {"from_account": "futures", "to_account": "coin_futures"}),
    # accounts HTX lacks
    ("finance", {"to_account": "finance"}),
    ("margin", {"from_account": "margin", "to_account": "spot"}),
    ("XT LEVER", {"to_account": "LEVER"}),
    ("XT FUTURES_U", {"to_account": "FUTURES_U"}),
    ("XT FUTURES_C", {"to_account": "futures_c"}),
    ("unknown account", {"to_account": "savings"}),
    ("empty account", {"from_account": ""}),
    ("blank account", {"from_account": "   "}),
    ("None account", {"to_account": None}),
    ("non-str account", {"to_account": 3}),
    ("look-alike long s", {"from_account": "\u017fpot"}),
    ("dash vs underscore", {"to_account": "linear_swap"}),
    # from == to
    ("spot -> spot", {"from_account": "spot", "to_account": "spot"}),
    ("spot -> SPOT", {"from_account": "spot", "to_account": "SPOT"}),
    ("usdt_futures -> linear-swap", {"from_account": "usdt_futures", "to_account": "linear-swap"}),
    ("LINEAR-SWAP -> usdt_futures", {"from_account": "LINEAR-SWAP", "to_account": "usdt_futures"}),
    ("coin_futures -> swap", {"from_account": "coin_futures", "to_account": "swap"}),
    ("Swap -> COIN_FUTURES", {"from_account": "Swap", "to_account": "COIN_FUTURES"}),
    ("otc -> OTC", {"from_account": "otc", "to_account": "OTC"}),
    ("futures -> Futures", {"from_account": "futures", "to_account": "Futures"}),
    # margin_account only for linear-swap
    (
        "margin_account spot -> coin_futures",
        {"to_account": "coin_futures", "margin_account": "USDT"},
    ),
    ("margin_account spot -> swap", {"to_account": "swap", "margin_account": "BTC-USDT"}),
    ("margin_account spot -> otc", {"to_account": "otc", "margin_account": "USDT"}),
    (
        "margin_account futures -> spot",
        {"from_account": "futures", "to_account": "spot", "margin_account": "USDT"},
    ),
    ("empty margin_account off linear-swap", {"to_account": "otc", "margin_account": ""}),
    # malformed margin_account
    ("margin_account underscore", {"margin_account": "BTC_USDT"}),
    ("margin_account slash", {"margin_account": "btc/usdt"}),
    ("margin_account empty", {"margin_account": ""}),
    ("margin_account blank", {"margin_account": "  "}),
    ("margin_account trailing dash", {"margin_account": "BTC-"}),
    ("margin_account leading dash", {"margin_account": "-USDT"}),
    ("margin_account three parts", {"margin_account": "BTC-USDT-X"}),
    ("margin_account inner space", {"margin_account": "BTC USDT"}),
    ("margin_account int", {"margin_account": 5}),
    ("margin_account non-ASCII", {"margin_account": "\u0411TC-USDT"}),
    # neither USDT nor a BASE-QUOTE pair (htx.md's shapes)
    ("margin_account lone coin", {"margin_account": "FOO"}),
    ("margin_account lone btc", {"margin_account": "btc"}),
    ("margin_account pair without dash", {"margin_account": "BTCUSDT"}),
    ("margin_account lowercase pair without dash", {"margin_account": "btcusdt"}),
    # symbol is an XT setting
    ("symbol", {"symbol": "btc_usdt"}),
    ("empty symbol", {"symbol": ""}),
    ("symbol on coin_futures", {"to_account": "coin_futures", "symbol": "btc_usdt"}),
]


@pytest.mark.parametrize(("label", "overrides"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_refused_before_io(label: str, overrides: dict[str, Any]) -> None:
    """Each HTX-specific bad input raises InvalidRequestError, sends and records nothing."""
    await refused(**overrides)


async def test_good_input_through_the_same_harness_does_reach_the_network() -> None:
    """The harness can see I/O: a valid transfer does send and record (so zero means zero)."""
    async with harness() as (h, client):
        with pytest.raises(xferkit.InsufficientBalanceError):
            await client.transfer("htx", **GOOD, key="reaches")
        assert any(r.url.path == "/v2/account/transfer" for r in h.requests)
        assert len(await h.journal.list()) == 1


async def test_eight_decimals_reach_the_network() -> None:
    """An amount with exactly 8 decimals passes validation and is sent."""
    async with harness() as (h, client):
        with pytest.raises(xferkit.InsufficientBalanceError):
            await client.transfer("htx", **{**GOOD, "amount": "0.00000001"}, key="eight")
        sent = [r for r in h.requests if r.url.path == "/v2/account/transfer"]
        assert len(sent) == 1
        assert b'"amount":0.00000001' in sent[0].content


# -- property-based bad inputs ------------------------------------------------------------------

MANY_DECIMALS = st.tuples(
    st.integers(min_value=0, max_value=10**9),
    st.text(alphabet="0123456789", min_size=8, max_size=20),
    st.sampled_from("123456789"),
    st.booleans(),
).map(lambda t: (f"{t[0]}.{t[1]}{t[2]}", t[3]))


@FAST
@given(case=MANY_DECIMALS)
async def test_any_amount_with_more_than_eight_decimals_is_refused(case: tuple[str, bool]) -> None:
    """Every amount with a nonzero digit past the 8th decimal is refused, as str or Decimal."""
    text, as_decimal = case
    await refused(amount=Decimal(text) if as_decimal else text)


@FAST
@given(amount=st.floats())
async def test_any_float_amount_is_refused(amount: float) -> None:
    """Every float is refused as an HTX amount."""
    await refused(amount=amount)


# -- accepted forms -----------------------------------------------------------------------------


def htx() -> HTX:
    return HTX(ACCESS_KEY, SECRET)


def spec_for(**overrides: Any) -> Any:
    return htx().validate(**{**GOOD, **overrides})


@pytest.mark.parametrize(
    "name", ["usdt_futures", "USDT_FUTURES", "linear-swap", "LINEAR-SWAP", "Linear-Swap"]
)
def test_linear_swap_names_are_one_account(name: str) -> None:
    """usdt_futures and HTX's linear-swap, in any case, are one account and one fingerprint."""
    spec = spec_for(to_account=name)
    assert spec.to_account == "usdt_futures"
    assert spec.fingerprint() == spec_for(to_account="usdt_futures").fingerprint()


@pytest.mark.parametrize("name", ["coin_futures", "COIN_FUTURES", "swap", "SWAP", "Swap"])
def test_swap_names_are_one_account(name: str) -> None:
    """coin_futures and HTX's swap, in any case, are one account and one fingerprint."""
    spec = spec_for(from_account=name, to_account="spot")
    assert spec.from_account == "coin_futures"
    assert spec.margin_account is None
    assert (
        spec.fingerprint() == spec_for(from_account="coin_futures", to_account="spot").fingerprint()
    )


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("spot", "usdt_futures"),
        ("usdt_futures", "spot"),
        ("spot", "coin_futures"),
        ("coin_futures", "spot"),
        ("spot", "futures"),
        ("futures", "spot"),
        ("spot", "otc"),
        ("otc", "spot"),
    ],
)
def test_supported_pairs_are_accepted(source: str, target: str) -> None:
    """Each pair HTX moves between validates to its unified names."""
    spec = spec_for(from_account=source.upper(), to_account=target)
    assert (spec.from_account, spec.to_account) == (source, target)
    assert spec.venue == "htx"


@pytest.mark.parametrize(("source", "target"), [("spot", "usdt_futures"), ("usdt_futures", "spot")])
def test_linear_swap_defaults_to_the_usdt_margin_account(source: str, target: str) -> None:
    """Without margin_account a linear-swap transfer uses the cross account USDT."""
    assert spec_for(from_account=source, to_account=target).margin_account == "USDT"


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("USDT", "USDT"),
        ("usdt", "USDT"),
        ("btc-usdt", "BTC-USDT"),
        ("BTC-USDT", "BTC-USDT"),
        ("Eth-Usdt", "ETH-USDT"),
    ],
)
def test_margin_account_is_uppercased(given_value: str, expected: str) -> None:
    """margin_account is normalised to uppercase (btc-usdt -> BTC-USDT)."""
    assert spec_for(margin_account=given_value).margin_account == expected


@pytest.mark.parametrize("given", ["USDT", "usdt", "BTC-USDT", "btc-usdt", "Eth-Usdt"])
def test_documented_margin_account_shapes_are_accepted(given: str) -> None:
    """USDT and a BASE-QUOTE pair are accepted in either case, as htx.md documents them."""
    assert spec_for(margin_account=given).margin_account == given.upper()


def test_default_and_explicit_usdt_margin_are_one_transfer() -> None:
    """Omitting margin_account and passing "usdt" give the same fingerprint."""
    assert spec_for().fingerprint() == spec_for(margin_account="usdt").fingerprint()


def test_isolated_and_cross_margin_are_different_transfers() -> None:
    """BTC-USDT (isolated) and USDT (cross) are different transfers."""
    assert spec_for(margin_account="BTC-USDT").fingerprint() != spec_for().fingerprint()


@pytest.mark.parametrize(
    "amount", ["0.00000001", "12345678.12345678", Decimal("1E-8"), Decimal("0.12345678000")]
)
def test_eight_decimals_are_accepted(amount: object) -> None:
    """Amounts with at most 8 significant decimals are accepted exactly."""
    assert spec_for(amount=amount).amount == Decimal(str(amount))


@FAST
@given(
    amount=st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal("100000000000"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_any_amount_with_at_most_eight_decimals_is_accepted(amount: Decimal) -> None:
    """Every positive amount with at most 8 decimals validates to the same value."""
    assert spec_for(amount=amount).amount == amount


@pytest.mark.parametrize("currency", ["USDT", "usdt", "Usdt"])
def test_currency_is_lowercased(currency: str) -> None:
    """Any case of a currency code normalises to lowercase."""
    assert spec_for(currency=currency).currency == "usdt"


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_",
    [
        {"rate_limit": 0},
        {"rate_limit": -1},
        {"rate_limit": float("nan")},
        {"rate_limit": True},
        {"settle_seconds": -1},
        {"settle_seconds": 0},
        {"settle_seconds": 0.3},
        {"settle_seconds": 1.999},
        {"settle_seconds": float("nan")},
        {"settle_seconds": True},
        {"ledger_margin_seconds": -1},
        {"ledger_margin_seconds": 0},
        {"ledger_margin_seconds": 0.5},
        {"ledger_margin_seconds": float("nan")},
    ],
    ids=str,
)
def test_invalid_htx_settings_are_refused(settings_: dict[str, Any]) -> None:
    """Non-positive rate limits, and settle or margin times below their floors (shorter, a
    transfer the ledger does not show yet would be judged absent and sent again), are refused
    before anything is recorded."""
    with pytest.raises(InvalidRequestError, match=next(iter(settings_))):
        HTX(ACCESS_KEY, SECRET, **settings_)


def test_valid_htx_settings_are_kept() -> None:
    """A small positive rate and settle and margin times at their floors are accepted; the
    defaults are HTX's."""
    assert HTX(ACCESS_KEY, SECRET, rate_limit=0.5).rate_limit == 0.5
    assert HTX(ACCESS_KEY, SECRET, settle_seconds=MIN_SETTLE_SECONDS).settle_seconds == 2.0
    floor = MIN_LEDGER_MARGIN_SECONDS
    assert HTX(ACCESS_KEY, SECRET, ledger_margin_seconds=floor).ledger_margin_seconds == 1.0
    default = HTX(ACCESS_KEY, SECRET)
    assert default.rate_limit == 1.0
    assert (default.settle_seconds, default.ledger_margin_seconds) == (10.0, 2.0)
    assert default.base_url == "https://api.huobi.pro"


def test_secret_is_not_in_repr() -> None:
    """The secret never appears in repr() or str() of an HTX venue; the access key may."""
    venue = HTX(ACCESS_KEY, SECRET)
    assert SECRET not in repr(venue)
    assert SECRET not in str(venue)
    assert ACCESS_KEY in repr(venue)
