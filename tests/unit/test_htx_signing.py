"""HTX signature v2, the signed request shapes and the transfer body (shared/venues/htx.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from xferkit import HTX
from xferkit.venues._base import TransferSpec
from xferkit.venues.htx import sign

ACCESS_KEY = "e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx"
SECRET = "b0xxxxxx-c6xxxxxx-94xxxxxx-dxxxx"
TIMESTAMP = "2017-05-11T15:19:30"
TS_MS = 1494515970000  # 2017-05-11T15:19:30Z in Unix milliseconds
HOST = "api.huobi.pro"

AUTH = {
    "AccessKeyId": ACCESS_KEY,
    "SignatureMethod": "HmacSHA256",
    "SignatureVersion": "2",
    "Timestamp": TIMESTAMP,
}

VECTOR_GET_ORDERS = "Nmd8AU8uAe0mkFpxNbiava0aeZzBEtYjCdie1ZYZjoM="
VECTOR_POST_TRANSFER = "BVELwKh4mpY/4BiHWJXSi6cSTK9WQrSq7xDTzgrnsc0="
VECTOR_GET_LEDGER = "5t9+gdl1WfID9ppJ/BQLolagctTgb5DnNxptEfM9uDE="

# The POST vector's canonical query written out by hand: auth params in ASCII order, ":" as %3A.
VECTOR_POST_QUERY = (
    "AccessKeyId=e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx&SignatureMethod=HmacSHA256"
    "&SignatureVersion=2&Timestamp=2017-05-11T15%3A19%3A30"
)

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


# -- an independent reference signer, written from htx.md --------------------------------------


def encode(value: str) -> str:
    """Percent-encode every byte outside the unreserved set with UPPERCASE hex."""
    out = []
    for char in value:
        if char in UNRESERVED:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
    return "".join(out)


def hmac_b64(text: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def reference(method: str, host: str, path: str, params: dict[str, str]) -> str:
    query = "&".join(f"{key}={encode(params[key])}" for key in sorted(params))
    return hmac_b64(f"{method}\n{host}\n{path}\n{query}")


def query_of(url: str) -> list[tuple[str, str]]:
    """The URL's query as (key, raw still-encoded value) pairs, in order."""
    pairs = []
    for part in urlsplit(url).query.split("&"):
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def decoded_query(url: str) -> dict[str, str]:
    pairs = query_of(url)
    decoded = {key: unquote(value) for key, value in pairs}
    assert len(decoded) == len(pairs), "a query key appears twice"
    return decoded


def htx(**settings: Any) -> HTX:
    return HTX(ACCESS_KEY, SECRET, **settings)


def recompute(url: str, method: str) -> str:
    """Recompute the signature of a signed URL from everything in its query but Signature."""
    parts = urlsplit(url)
    params = decoded_query(url)
    del params["Signature"]
    return reference(method, parts.netloc.lower(), parts.path, params)


# -- the three documented vectors ---------------------------------------------------------------


def test_vector_get_orders() -> None:
    """GET /v1/order/orders with order-id signs to the documented signature."""
    signature = sign(
        secret=SECRET,
        method="GET",
        host=HOST,
        path="/v1/order/orders",
        params={**AUTH, "order-id": "1234567890"},
    )
    assert signature == VECTOR_GET_ORDERS


def test_vector_post_transfer() -> None:
    """POST /v2/account/transfer with only the auth params signs to the documented signature."""
    signature = sign(
        secret=SECRET, method="POST", host=HOST, path="/v2/account/transfer", params=AUTH
    )
    assert signature == VECTOR_POST_TRANSFER


def test_vector_get_ledger() -> None:
    """GET /v2/account/ledger with the five ledger params signs to the documented signature."""
    params = {
        **AUTH,
        "accountId": "12345",
        "currency": "usdt",
        "transactTypes": "transfer",
        "startTime": "1494512370000",
        "endTime": "1494516000000",
    }
    signature = sign(
        secret=SECRET, method="GET", host=HOST, path="/v2/account/ledger", params=params
    )
    assert signature == VECTOR_GET_LEDGER


def test_vector_follows_the_documented_pre_sign_text() -> None:
    """A plain HMAC over the hand-written four-line pre-sign text reproduces the POST vector."""
    text = f"POST\napi.huobi.pro\n/v2/account/transfer\n{VECTOR_POST_QUERY}"
    assert hmac_b64(text) == VECTOR_POST_TRANSFER


# -- encoding and ordering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(VECTOR_POST_QUERY.replace("%3A", "%3a"), id="lowercase hex"),
        pytest.param(VECTOR_POST_QUERY.replace("%3A", ":"), id="unencoded colon"),
    ],
)
def test_only_uppercase_encoding_gives_the_vector(variant: str) -> None:
    """sign() encodes ':' as %3A: a lowercase or raw ':' variant signs to something else."""
    assert variant != VECTOR_POST_QUERY
    signature = sign(
        secret=SECRET, method="POST", host=HOST, path="/v2/account/transfer", params=AUTH
    )
    assert hmac_b64(f"POST\napi.huobi.pro\n/v2/account/transfer\n{variant}") != signature
    assert signature == VECTOR_POST_TRANSFER


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a:b", "a%3Ab"),
        ("a/b", "a%2Fb"),
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("a=b&c", "a%3Db%26c"),
        ("\u00e9", "%C3%A9"),
        ("AZaz09-_.~", "AZaz09-_.~"),
    ],
)
def test_values_are_percent_encoded_with_uppercase_hex(value: str, encoded: str) -> None:
    """A GET value is signed percent-encoded in UPPERCASE hex, unreserved characters kept."""
    params = {**AUTH, "x": value}
    query = f"{VECTOR_POST_QUERY}&x={encoded}"
    expected = hmac_b64(f"GET\napi.huobi.pro\n/p\n{query}")
    assert sign(secret=SECRET, method="GET", host=HOST, path="/p", params=params) == expected


def test_keys_sort_in_ascii_order_uppercase_first() -> None:
    """Keys sort by ASCII: every uppercase initial before any lowercase one."""
    params = {"b": "1", "a": "3", "B": "2", "Z": "4"}
    ascii_order = "B=2&Z=4&a=3&b=1"
    folded_order = "a=3&B=2&b=1&Z=4"
    expected = hmac_b64(f"GET\napi.huobi.pro\n/p\n{ascii_order}")
    assert sign(secret=SECRET, method="GET", host=HOST, path="/p", params=params) == expected
    assert hmac_b64(f"GET\napi.huobi.pro\n/p\n{folded_order}") != expected


def test_signature_does_not_depend_on_mapping_order() -> None:
    """The same parameters given in another insertion order sign identically."""
    reversed_auth = dict(reversed(list(AUTH.items())))
    assert list(reversed_auth) != list(AUTH)
    signature = sign(
        secret=SECRET, method="POST", host=HOST, path="/v2/account/transfer", params=reversed_auth
    )
    assert signature == VECTOR_POST_TRANSFER


def test_host_is_lowercased_in_the_pre_sign_text() -> None:
    """An uppercase host signs as its lowercase form."""
    signature = sign(
        secret=SECRET, method="POST", host="API.Huobi.PRO", path="/v2/account/transfer", params=AUTH
    )
    assert signature == VECTOR_POST_TRANSFER


# -- HTX.transfer_request -----------------------------------------------------------------------


def test_transfer_request_reproduces_the_post_vector() -> None:
    """transfer_request at the vector's instant carries the vector signature, percent-encoded."""
    request = htx().transfer_request("{}", TS_MS)
    assert request.method == "POST"
    parts = urlsplit(request.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", HOST, "/v2/account/transfer")
    raw = dict(query_of(request.url))
    assert raw["Signature"] == "BVELwKh4mpY%2F4BiHWJXSi6cSTK9WQrSq7xDTzgrnsc0%3D"
    assert decoded_query(request.url)["Signature"] == VECTOR_POST_TRANSFER


def test_transfer_request_query_holds_exactly_the_auth_params_and_signature() -> None:
    """The POST query holds the four auth params with their values, then Signature, nothing else."""
    request = htx().transfer_request('{"a":1}', TS_MS)
    query = decoded_query(request.url)
    assert set(query) == {*AUTH, "Signature"}
    assert {k: query[k] for k in AUTH} == AUTH
    raw = dict(query_of(request.url))
    assert raw["Timestamp"] == "2017-05-11T15%3A19%3A30"
    assert query_of(request.url)[-1][0] == "Signature"


def test_transfer_request_does_not_sign_the_body() -> None:
    """Two different bodies at the same instant carry the same signature."""
    one = htx().transfer_request('{"from":"spot","to":"swap","currency":"btc","amount":1}', TS_MS)
    two = htx().transfer_request('{"from":"spot","to":"otc","currency":"usdt","amount":9}', TS_MS)
    assert one.body != two.body
    assert decoded_query(one.url)["Signature"] == decoded_query(two.url)["Signature"]
    assert decoded_query(one.url)["Signature"] == VECTOR_POST_TRANSFER


def test_transfer_request_sends_the_body_unchanged_as_json() -> None:
    """The request body is exactly the given body's bytes, sent as application/json."""
    body = '{"from":"spot","to":"linear-swap","currency":"usdt","amount":10}'
    request = htx().transfer_request(body, TS_MS)
    assert request.body == body.encode()
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"


def test_transfer_request_signs_a_non_default_port() -> None:
    """With a non-default port the signed host is host:port, as called."""
    request = htx(base_url="http://127.0.0.1:8123").transfer_request("{}", TS_MS)
    parts = urlsplit(request.url)
    assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:8123")
    signature = decoded_query(request.url)["Signature"]
    expected = hmac_b64(f"POST\n127.0.0.1:8123\n/v2/account/transfer\n{VECTOR_POST_QUERY}")
    assert signature == expected
    without_port = hmac_b64(f"POST\n127.0.0.1\n/v2/account/transfer\n{VECTOR_POST_QUERY}")
    assert signature != without_port


def test_transfer_request_signs_the_configured_host() -> None:
    """Another host (api-aws.huobi.pro) is signed as that host, with a trailing slash ignored."""
    request = htx(base_url="https://api-aws.huobi.pro/").transfer_request("{}", TS_MS)
    assert urlsplit(request.url).path == "/v2/account/transfer"
    expected = hmac_b64(f"POST\napi-aws.huobi.pro\n/v2/account/transfer\n{VECTOR_POST_QUERY}")
    assert decoded_query(request.url)["Signature"] == expected


def test_transfer_request_with_an_explicit_default_port_signs_the_bare_host() -> None:
    """An explicit default port (https :443) is left out of the signed host, as htx.md says."""
    # httpx sends "Host: api.huobi.pro" for https://api.huobi.pro:443, and that is the host
    # the venue verifies the signature against.
    request = htx(base_url="https://api.huobi.pro:443").transfer_request("{}", TS_MS)
    assert decoded_query(request.url)["Signature"] == VECTOR_POST_TRANSFER


@pytest.mark.parametrize(
    ("timestamp_ms", "text"),
    [
        (TS_MS, "2017-05-11T15:19:30"),
        (TS_MS + 999, "2017-05-11T15:19:30"),  # millis are dropped, never rounded up
        (TS_MS + 1000, "2017-05-11T15:19:31"),
        (0, "1970-01-01T00:00:00"),
        (1700000000123, "2023-11-14T22:13:20"),
        (1709164799999, "2024-02-28T23:59:59"),
        (1709164800000, "2024-02-29T00:00:00"),
    ],
)
def test_timestamp_is_utc_without_millis(timestamp_ms: int, text: str) -> None:
    """The Timestamp param is the UTC time in whole seconds, formatted YYYY-MM-DDThh:mm:ss."""
    request = htx().transfer_request("{}", timestamp_ms)
    query = decoded_query(request.url)
    assert query["Timestamp"] == text
    assert query["Signature"] == recompute(request.url, "POST")


def test_a_fresh_timestamp_gives_a_fresh_signature() -> None:
    """Re-signing a second later changes the Timestamp and the signature, not the body."""
    first = htx().transfer_request("{}", TS_MS)
    later = htx().transfer_request("{}", TS_MS + 1000)
    assert decoded_query(first.url)["Signature"] != decoded_query(later.url)["Signature"]
    assert first.body == later.body


def test_transfer_signature_depends_on_the_secret() -> None:
    """Another secret gives another signature over the same request."""
    request = HTX(ACCESS_KEY, "another-secret").transfer_request("{}", TS_MS)
    assert decoded_query(request.url)["Signature"] != VECTOR_POST_TRANSFER


# -- ledger and accounts requests ---------------------------------------------------------------


def ledger(**overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "account_id": "12345",
        "currency": "usdt",
        "start_ms": 1494512370000,
        "end_ms": 1494516000000,
        "from_id": None,
        "timestamp_ms": TS_MS,
    }
    fields.update(overrides)
    return htx().ledger_request(**fields)


def test_ledger_request_shape() -> None:
    """The ledger request is a GET to /v2/account/ledger with the documented parameters."""
    request = ledger()
    assert request.method == "GET"
    assert request.body is None
    parts = urlsplit(request.url)
    assert (parts.netloc, parts.path) == (HOST, "/v2/account/ledger")
    query = decoded_query(request.url)
    assert query == {
        **AUTH,
        "accountId": "12345",
        "currency": "usdt",
        "transactTypes": "transfer",
        "startTime": "1494512370000",
        "endTime": "1494516000000",
        "limit": "500",
        "Signature": query["Signature"],
    }


def test_ledger_request_signs_every_get_parameter() -> None:
    """The ledger signature is the HMAC over all of its query parameters, recomputed."""
    request = ledger()
    assert decoded_query(request.url)["Signature"] == recompute(request.url, "GET")


def test_ledger_request_signature_is_not_the_auth_only_signature() -> None:
    """Signing only the auth params would give another signature: the GET params are signed."""
    request = ledger()
    auth_only = hmac_b64(f"GET\napi.huobi.pro\n/v2/account/ledger\n{VECTOR_POST_QUERY}")
    assert decoded_query(request.url)["Signature"] != auth_only


def test_ledger_request_continues_from_an_id() -> None:
    """A next page carries fromId, and fromId is signed too."""
    request = ledger(from_id="987654321987654321")
    query = decoded_query(request.url)
    assert query["fromId"] == "987654321987654321"
    assert query["Signature"] == recompute(request.url, "GET")
    assert query["Signature"] != decoded_query(ledger().url)["Signature"]


def test_ledger_request_signs_a_non_default_port() -> None:
    """The ledger request signs host:port when the base URL has a non-default port."""
    venue = HTX(ACCESS_KEY, SECRET, base_url="http://127.0.0.1:8123")
    request = venue.ledger_request(
        account_id="1",
        currency="btc",
        start_ms=1,
        end_ms=2,
        from_id=None,
        timestamp_ms=TS_MS,
    )
    assert urlsplit(request.url).netloc == "127.0.0.1:8123"
    assert decoded_query(request.url)["Signature"] == recompute(request.url, "GET")


def test_ledger_query_values_are_uppercase_percent_encoded() -> None:
    """Every raw value in the ledger URL is the uppercase percent-encoding of its decoded value."""
    request = ledger()
    for key, raw in query_of(request.url):
        assert raw == encode(unquote(raw)), key


def test_accounts_request_is_signed() -> None:
    """The accounts request is a signed GET to /v1/account/accounts with only the auth params."""
    request = htx().accounts_request(TS_MS)
    assert request.method == "GET"
    assert request.body is None
    parts = urlsplit(request.url)
    assert (parts.netloc, parts.path) == (HOST, "/v1/account/accounts")
    query = decoded_query(request.url)
    assert set(query) == {*AUTH, "Signature"}
    assert query["Signature"] == recompute(request.url, "GET")
    expected = hmac_b64(f"GET\napi.huobi.pro\n/v1/account/accounts\n{VECTOR_POST_QUERY}")
    assert query["Signature"] == expected


def test_time_request_is_unsigned() -> None:
    """The server-time request is a plain GET to /v1/common/timestamp with no query."""
    request = htx().time_request()
    assert request.method == "GET"
    assert request.url == "https://api.huobi.pro/v1/common/timestamp"


# -- transfer_body ------------------------------------------------------------------------------


def spec(**overrides: Any) -> TransferSpec:
    fields: dict[str, Any] = {
        "currency": "usdt",
        "amount": "10",
        "from_account": "spot",
        "to_account": "usdt_futures",
    }
    fields.update(overrides)
    return htx().validate(**fields)


def amount_literal(body: str) -> str:
    match = re.search(r'"amount":([^,}]+)', body)
    assert match is not None, body
    return match.group(1)


def parsed(body: str) -> dict[str, Any]:
    return json.loads(body, parse_float=Decimal, parse_int=Decimal)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("source", "target", "native_from", "native_to"),
    [
        ("spot", "usdt_futures", "spot", "linear-swap"),
        ("usdt_futures", "spot", "linear-swap", "spot"),
        ("spot", "coin_futures", "spot", "swap"),
        ("coin_futures", "spot", "swap", "spot"),
        ("spot", "futures", "spot", "futures"),
        ("futures", "spot", "futures", "spot"),
        ("spot", "otc", "spot", "otc"),
        ("otc", "spot", "otc", "spot"),
    ],
)
def test_body_uses_htx_native_account_names(
    source: str, target: str, native_from: str, native_to: str
) -> None:
    """from/to carry HTX's own lowercase account names."""
    body = parsed(htx().transfer_body(spec(from_account=source, to_account=target), None))
    assert (body["from"], body["to"]) == (native_from, native_to)


def test_body_for_linear_swap_with_default_cross_margin() -> None:
    """spot -> usdt_futures sends margin-account USDT and the exact documented fields."""
    body = htx().transfer_body(spec(currency="USDT"), None)
    assert parsed(body) == {
        "from": "spot",
        "to": "linear-swap",
        "currency": "usdt",
        "amount": Decimal(10),
        "margin-account": "USDT",
    }
    assert amount_literal(body) == "10"


def test_body_for_isolated_margin_account() -> None:
    """An isolated margin account is sent in uppercase, e.g. BTC-USDT."""
    body = parsed(htx().transfer_body(spec(margin_account="btc-usdt"), None))
    assert body["margin-account"] == "BTC-USDT"


def test_body_from_linear_swap_carries_margin_account() -> None:
    """usdt_futures -> spot also names the margin account."""
    body = parsed(htx().transfer_body(spec(from_account="usdt_futures", to_account="spot"), None))
    assert body["margin-account"] == "USDT"


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("spot", "coin_futures"),
        ("coin_futures", "spot"),
        ("spot", "futures"),
        ("futures", "spot"),
        ("spot", "otc"),
        ("otc", "spot"),
    ],
)
def test_body_omits_margin_account_off_linear_swap(source: str, target: str) -> None:
    """Transfers not touching linear-swap carry no margin-account field."""
    body = htx().transfer_body(spec(from_account=source, to_account=target), None)
    assert "margin-account" not in parsed(body)
    assert "margin" not in body


def test_body_currency_is_lowercase() -> None:
    """The currency is sent in lowercase."""
    body = parsed(htx().transfer_body(spec(currency="BTC", to_account="coin_futures"), None))
    assert body["currency"] == "btc"


@pytest.mark.parametrize(
    ("amount", "literal"),
    [
        (Decimal("0.00000001"), "0.00000001"),
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("12345678901234567.12345678"), "12345678901234567.12345678"),
        ("12345678901234567.12345678", "12345678901234567.12345678"),
        (Decimal("1E+2"), "100"),
        (Decimal("10.500"), "10.5"),
        ("0.1", "0.1"),
        (10**20, "100000000000000000000"),
        (7, "7"),
    ],
)
def test_body_amount_is_an_exact_json_number_literal(amount: object, literal: str) -> None:
    """The amount is a JSON number written from the Decimal's digits: no quotes, no float."""
    body = htx().transfer_body(spec(amount=amount), None)
    assert amount_literal(body) == literal
    assert parsed(body)["amount"] == Decimal(literal)


def test_body_amount_is_not_a_float_rendering() -> None:
    """A 25-significant-digit amount survives; a float would have rounded it."""
    body = htx().transfer_body(spec(amount="12345678901234567.12345678"), None)
    assert float("12345678901234567.12345678") != Decimal("12345678901234567.12345678")
    assert "12345678901234568" not in body
    assert "e" not in amount_literal(body).lower()


def test_body_is_the_same_for_equal_specs() -> None:
    """Equal specs serialise to byte-identical bodies (every attempt sends the same bytes)."""
    one = htx().transfer_body(spec(amount="10.0", from_account="SPOT"), None)
    two = htx().transfer_body(spec(amount=Decimal("1E+1"), to_account="LINEAR-SWAP"), None)
    assert one == two


def test_htx_has_no_idempotency_token() -> None:
    """HTX has no client idempotency key, so no token is derived (nor a legacy one)."""
    assert htx().idempotency_token("k-1", spec().fingerprint()) is None
    assert htx().legacy_token("k-1") is None
