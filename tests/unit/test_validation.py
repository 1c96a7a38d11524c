"""Input validation: bad input is refused before any I/O; good input has one canonical form."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xferkit
from xferkit import XT, InvalidRequestError, RetryPolicy
from xferkit._validation import amount_text

API_KEY = "api-key-for-validation"
SECRET = "validation-secret-do-not-leak"

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
        if request.url.path == "/v4/public/time":
            return httpx.Response(200, json={"rc": 0, "mc": "SUCCESS", "result": {"serverTime": 1}})
        # A definitive refusal, so a request that does get through settles at once.
        return httpx.Response(200, json={"rc": 1, "mc": "AUTH_103", "ma": ["bad signature"]})

    async def assert_refused(self, client: xferkit.Client, venue: str, **kwargs: Any) -> None:
        with pytest.raises(InvalidRequestError) as excinfo:
            await client.transfer(venue, **kwargs)
        assert isinstance(excinfo.value, ValueError)
        assert self.requests == []
        assert await self.journal.list() == []


@contextlib.asynccontextmanager
async def harness() -> AsyncIterator[tuple[Harness, xferkit.Client]]:
    h = Harness()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(h.handler)) as http,
        xferkit.Client(XT(API_KEY, SECRET), journal=h.journal, http_client=http) as client,
    ):
        yield h, client


async def refused(venue: str = "xt", **overrides: Any) -> None:
    """Assert that transfer() with GOOD updated by overrides is refused without any I/O."""
    async with harness() as (h, client):
        await h.assert_refused(client, venue, **{**GOOD, **overrides})


# -- explicit bad inputs ------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, dict[str, Any]]] = [
    ("from_account look-alike long s", {"from_account": "\u017fpot"}),
    ("to_account look-alike ligature", {"to_account": "\ufb01nance"}),
    ("currency Kelvin sign", {"currency": "\u212a"}),
    ("float amount", {"amount": 1.5}),
    ("integral float amount", {"amount": 10.0}),
    ("bool amount", {"amount": True}),
    ("None amount", {"amount": None}),
    ("list amount", {"amount": [10]}),
    ("zero Decimal", {"amount": Decimal("0")}),
    ("negative Decimal", {"amount": Decimal("-1")}),
    ("negative zero Decimal", {"amount": Decimal("-0")}),
    ("NaN Decimal", {"amount": Decimal("NaN")}),
    ("sNaN Decimal", {"amount": Decimal("sNaN")}),
    ("infinite Decimal", {"amount": Decimal("Infinity")}),
    ("zero int", {"amount": 0}),
    ("negative int", {"amount": -5}),
    ("exponent string", {"amount": "1e3"}),
    ("upper exponent string", {"amount": "1E+1"}),
    ("leading space string", {"amount": " 10"}),
    ("trailing newline string", {"amount": "10\n"}),
    ("plus sign string", {"amount": "+10"}),
    ("minus sign string", {"amount": "-10"}),
    ("trailing dot string", {"amount": "10."}),
    ("leading dot string", {"amount": ".5"}),
    ("zero string", {"amount": "0.000"}),
    ("empty string", {"amount": ""}),
    ("thousands separator", {"amount": "1,000"}),
    ("underscore digits", {"amount": "1_000"}),
    ("fullwidth digits", {"amount": "\uff11\uff10"}),
    ("arabic-indic digits", {"amount": "\u0661\u0660"}),
    ("nan string", {"amount": "NaN"}),
    ("too long amount", {"amount": "1" + "0" * 113}),
    ("key too long", {"key": "k" * 101}),
    ("empty key", {"key": ""}),
    ("key with NUL", {"key": "a\x00b"}),
    ("key with newline", {"key": "a\nb"}),
    ("key with escape", {"key": "a\x1bb"}),
    ("key with DEL", {"key": "a\x7fb"}),
    ("key with leading space", {"key": " key"}),
    ("key with trailing tab", {"key": "key\t"}),
    ("int key", {"key": 123}),
    ("unknown from account", {"from_account": "savings"}),
    ("unknown to account", {"to_account": "wallet"}),
    ("HTX-only account", {"to_account": "otc"}),
    ("empty account", {"from_account": ""}),
    ("None account", {"to_account": None}),
    ("from == to", {"from_account": "spot", "to_account": "spot"}),
    ("from == to across case", {"from_account": "spot", "to_account": "SPOT"}),
    ("from == to unified vs native", {"from_account": "usdt_futures", "to_account": "FUTURES_U"}),
    ("margin vs LEVER", {"from_account": "margin", "to_account": "lever", "symbol": "btc_usdt"}),
    ("margin without symbol", {"from_account": "margin", "to_account": "spot"}),
    ("LEVER without symbol", {"from_account": "spot", "to_account": "LEVER"}),
    ("margin with bad symbol", {"from_account": "margin", "to_account": "spot", "symbol": "btc"}),
    ("margin with dashed symbol", {"to_account": "margin", "symbol": "btc-usdt"}),
    ("symbol without margin", {"symbol": "btc_usdt"}),
    ("empty symbol without margin", {"symbol": ""}),
    ("margin_account on XT", {"margin_account": "btc-usdt"}),
    ("currency with dash", {"currency": "usd-t"}),
    ("currency with inner space", {"currency": "us dt"}),
    ("currency with bang", {"currency": "usdt!"}),
    ("currency with dollar", {"currency": "$"}),
    ("empty currency", {"currency": ""}),
    ("currency too long", {"currency": "a" * 33}),
    ("non-str currency", {"currency": 5}),
    ("negative deadline", {"deadline": -1}),
    ("zero deadline", {"deadline": 0}),
    ("NaN deadline", {"deadline": float("nan")}),
    ("infinite deadline", {"deadline": float("inf")}),
]


@pytest.mark.parametrize(("label", "overrides"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_refused_before_io(label: str, overrides: dict[str, Any]) -> None:
    """Each bad input raises InvalidRequestError, sends nothing and records nothing."""
    await refused(**overrides)


@pytest.mark.parametrize("venue", ["binance", "XTX", "", None])
async def test_unknown_venue_is_refused_before_io(venue: Any) -> None:
    """A venue the client was not given is refused without I/O."""
    await refused(venue=venue)


async def test_good_input_through_the_same_harness_does_reach_the_network() -> None:
    """The harness can see I/O: a valid transfer does send and record (so zero means zero)."""
    async with harness() as (h, client):
        with pytest.raises(xferkit.AuthenticationError):
            await client.transfer("xt", **GOOD, key="reaches")
        assert h.requests
        assert len(await h.journal.list()) == 1


# -- property-based bad inputs ------------------------------------------------------------------


@FAST
@given(amount=st.floats())
async def test_any_float_amount_is_refused(amount: float) -> None:
    """Every float, integral or not, finite or not, is refused as an amount."""
    await refused(amount=amount)


@FAST
@given(amount=st.decimals(max_value=0) | st.sampled_from([Decimal("NaN"), Decimal("-Infinity")]))
async def test_any_non_positive_decimal_is_refused(amount: Decimal) -> None:
    """Every zero, negative or non-finite Decimal is refused as an amount."""
    await refused(amount=amount)


@FAST
@given(amount=st.integers(max_value=0))
async def test_any_non_positive_int_is_refused(amount: int) -> None:
    """Every zero or negative int is refused as an amount."""
    await refused(amount=amount)


PLAIN = st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,6})?", fullmatch=True)


@FAST
@given(
    text=st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,4})?[eE][+-]?[0-9]{1,3}", fullmatch=True)
    | st.tuples(st.sampled_from([" ", "\t", "\n", "\u00a0", "\u2003"]), PLAIN, st.booleans()).map(
        lambda t: t[0] + t[1] if t[2] else t[1] + t[0]
    )
    | st.tuples(st.sampled_from(["+", "-"]), PLAIN).map("".join)
)
async def test_amount_strings_with_exponent_whitespace_or_sign_are_refused(text: str) -> None:
    """Amount strings with an exponent, surrounding white space or a sign are refused."""
    await refused(amount=text)


@FAST
@given(key=st.text(min_size=101, max_size=300))
async def test_keys_longer_than_100_are_refused(key: str) -> None:
    """Every key longer than 100 characters is refused."""
    await refused(key=key)


CONTROL = st.characters(categories=["Cc"])


@FAST
@given(
    key=st.tuples(
        st.text(alphabet="abc-_0123", max_size=40), CONTROL, st.text(alphabet="xyz", max_size=40)
    ).map("".join)
)
async def test_keys_with_control_characters_are_refused(key: str) -> None:
    """Every key containing a control character is refused."""
    await refused(key=key)


@FAST
@given(
    name=st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=20).filter(
        lambda n: (
            n.strip().lower() not in {"spot", "margin", "finance", "usdt_futures", "coin_futures"}
            and n.strip().upper() not in {"SPOT", "LEVER", "FINANCE", "FUTURES_U", "FUTURES_C"}
        )
    )
)
async def test_unknown_account_names_are_refused(name: str) -> None:
    """Any ASCII name that is not an XT account (unified or native) is refused."""
    await refused(from_account=name)


@FAST
@given(
    pair=st.sampled_from(
        [
            ("spot", "SPOT"),
            ("Spot", "spot"),
            ("finance", "FINANCE"),
            ("usdt_futures", "futures_u"),
            ("coin_futures", "FUTURES_C"),
            ("margin", "LEVER"),
        ]
    ),
    swap=st.booleans(),
)
async def test_same_account_in_any_spelling_is_refused(pair: tuple[str, str], swap: bool) -> None:
    """from and to naming the same account, in any case or naming, is refused."""
    source, target = (pair[1], pair[0]) if swap else pair
    symbol = "btc_usdt" if "margin" in pair else None
    await refused(from_account=source, to_account=target, symbol=symbol)


@FAST
@given(
    currency=st.tuples(
        st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True),
        st.sampled_from(list("-_!$/.@#:+*,;'\"()[]{}<>=?%&^~` ")),
        st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True),
    ).map("".join)
)
async def test_currency_with_symbols_is_refused(currency: str) -> None:
    """A currency code containing punctuation or inner white space is refused."""
    await refused(currency=currency)


# -- precision --------------------------------------------------------------------------------


def xt() -> XT:
    return XT(API_KEY, SECRET)


def spec_for(**overrides: Any) -> Any:
    return xt().validate(**{**GOOD, **overrides})


@pytest.mark.parametrize(
    "amount",
    [
        "12345678901234567890.123456789",
        "1.0000000000000000000000000000001",
        Decimal("99999999999999999999999999999.9"),
        10**40 + 1,
    ],
)
def test_accepted_amount_is_never_rounded(amount: object) -> None:
    """An amount is either refused or kept exactly; it is never silently rounded."""
    try:
        spec = spec_for(amount=amount)
    except InvalidRequestError:
        return
    expected = Decimal(amount)  # type: ignore[arg-type]
    assert spec.amount == expected
    assert Decimal(amount_text(spec.amount)) == expected


@settings(max_examples=100, deadline=None)
@given(whole=st.integers(min_value=1, max_value=10**50), fraction=st.integers(0, 10**50))
def test_any_accepted_plain_amount_is_kept_exactly(whole: int, fraction: int) -> None:
    """For any plain decimal string within XT's length limit, accepting it keeps its value."""
    text = f"{whole}.{fraction}1"
    try:
        spec = spec_for(amount=text)
    except InvalidRequestError:
        return
    assert spec.amount == Decimal(text)


# -- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount", ["10", "10.0", "10.000", "0010", Decimal("1E+1"), Decimal("10.00"), 10]
)
def test_equal_amounts_normalise_to_one_fingerprint(amount: object) -> None:
    """Every spelling of ten gives the same canonical amount and fingerprint as "10"."""
    reference = spec_for(amount="10")
    spec = spec_for(amount=amount)
    assert spec.amount == Decimal(10)
    assert spec.fingerprint() == reference.fingerprint()
    assert spec.canonical_json() == reference.canonical_json()


def test_different_amounts_have_different_fingerprints() -> None:
    """A different amount is a different transfer (the fingerprint tells them apart)."""
    assert spec_for(amount="10").fingerprint() != spec_for(amount="10.01").fingerprint()


@pytest.mark.parametrize("currency", ["USDT", "usdt", "Usdt", " usdt "])
def test_currency_is_lowercased(currency: str) -> None:
    """Any case of a currency code normalises to lowercase and one fingerprint."""
    spec = spec_for(currency=currency)
    assert spec.currency == "usdt"
    assert spec.fingerprint() == spec_for(currency="usdt").fingerprint()


@pytest.mark.parametrize("name", ["usdt_futures", "USDT_FUTURES", "FUTURES_U", "futures_u"])
def test_native_and_unified_account_names_are_one_account(name: str) -> None:
    """XT's FUTURES_U in any case is the unified usdt_futures account."""
    spec = spec_for(to_account=name)
    assert spec.to_account == "usdt_futures"
    assert spec.fingerprint() == spec_for(to_account="usdt_futures").fingerprint()


@pytest.mark.parametrize(
    ("native", "unified"),
    [
        ("SPOT", "spot"),
        ("LEVER", "margin"),
        ("FINANCE", "finance"),
        ("FUTURES_U", "usdt_futures"),
        ("FUTURES_C", "coin_futures"),
    ],
)
def test_every_native_name_maps_to_its_unified_name(native: str, unified: str) -> None:
    """Each of XT's five native account names maps to the documented unified name."""
    other = "finance" if unified != "finance" else "spot"
    symbol = "btc_usdt" if native == "LEVER" else None
    spec = spec_for(from_account=native.lower(), to_account=other, symbol=symbol)
    assert spec.from_account == unified


def test_margin_symbol_is_normalised() -> None:
    """The margin symbol is lowercased and kept in the spec."""
    spec = spec_for(from_account="margin", to_account="spot", symbol="BTC_USDT")
    assert spec.symbol == "btc_usdt"


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: XT(API_KEY, SECRET, recv_window_ms=1000), id="recv_window 1000"),
        pytest.param(lambda: XT(API_KEY, SECRET, recv_window_ms=60001), id="recv_window 60001"),
        pytest.param(lambda: XT(API_KEY, SECRET, rate_limit=0), id="rate_limit 0"),
        pytest.param(lambda: XT(API_KEY, SECRET, rate_limit=-1), id="rate_limit -1"),
        pytest.param(lambda: XT(API_KEY, SECRET, rate_limit=float("nan")), id="rate_limit nan"),
        pytest.param(lambda: RetryPolicy(max_attempts=0), id="max_attempts 0"),
        pytest.param(lambda: RetryPolicy(max_attempts=-1), id="max_attempts -1"),
        pytest.param(lambda: RetryPolicy(max_attempts=2.5), id="max_attempts 2.5"),
        pytest.param(lambda: RetryPolicy(max_attempts=True), id="max_attempts True"),
        pytest.param(lambda: RetryPolicy(initial_backoff=0), id="initial_backoff 0"),
        pytest.param(lambda: RetryPolicy(max_backoff=-1), id="max_backoff -1"),
        pytest.param(lambda: RetryPolicy(max_retry_after=float("inf")), id="max_retry_after inf"),
        pytest.param(lambda: RetryPolicy(deadline=0), id="deadline 0"),
        pytest.param(lambda: xferkit.Client(XT(API_KEY, SECRET), timeout=-1), id="timeout -1"),
        pytest.param(lambda: xferkit.Client(XT(API_KEY, SECRET), timeout=0), id="timeout 0"),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), timeout=float("nan")), id="timeout nan"
        ),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), lease_seconds=0), id="lease_seconds 0"
        ),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), lease_seconds=-1), id="lease_seconds -1"
        ),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), lease_seconds=float("nan")),
            id="lease_seconds nan",
        ),
        pytest.param(lambda: XT(API_KEY, SECRET, recv_window_ms=5000.0), id="recv_window float"),
        pytest.param(lambda: xferkit.Client(XT(API_KEY, SECRET), timeout=True), id="timeout True"),
        pytest.param(lambda: xferkit.Client(XT(API_KEY, SECRET), retry=None), id="retry None"),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), timeout=30, lease_seconds=20),
            id="lease shorter than timeout",
        ),
        pytest.param(xferkit.Client, id="no venue"),
        pytest.param(lambda: xferkit.Client("xt"), id="venue is a string"),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), XT("other", SECRET)), id="venue twice"
        ),
        pytest.param(
            lambda: xferkit.Client(XT(API_KEY, SECRET), journal=42), id="journal is an int"
        ),
    ],
)
def test_invalid_configuration_is_refused(make: Any) -> None:
    """Invalid venue, retry or client settings raise InvalidRequestError at construction."""
    with pytest.raises(InvalidRequestError):
        make()


def test_configuration_bounds_are_inclusive() -> None:
    """recv_window 2000 and 60000 and a tiny positive rate are accepted."""
    assert XT(API_KEY, SECRET, recv_window_ms=2000).recv_window_ms == 2000
    assert XT(API_KEY, SECRET, recv_window_ms=60000).recv_window_ms == 60000
    assert XT(API_KEY, SECRET, rate_limit=0.01).rate_limit == 0.01
    assert RetryPolicy(max_attempts=1, deadline=None).deadline is None
