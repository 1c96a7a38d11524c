"""XT request signing, bizId derivation and body serialisation (shared/venues/xt.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xferkit import XT
from xferkit.venues._base import TransferSpec
from xferkit.venues.xt import sign

API_KEY = "3976eb88-76d0-4f6e-a6b2-a57980770085"
SECRET = "bc6630d0231fda5cd98794f52c4998659beda290"
TS = 1641446237201
RW = 5000

VECTOR_BODY = (
    '{"bizId":"7f1c2b9e-0000-4000-8000-000000000001","from":"SPOT","to":"FUTURES_U",'
    '"currency":"usdt","amount":"10"}'
)
VECTOR_POST_SIGNATURE = "e7e41817b8d4b7da08781e5c483aab4b9c674a33089102c583ee70d8c34f00fe"
VECTOR_GET_QUERY_SIGNATURE = "6a5b72135f382ab8f1f1d99e404eb750c5a12236091830eba40de9f819ea0522"
VECTOR_GET_SIGNATURE = "6f65f1289568e3ce07cfa8b1b9664e897e19fcaedc063aac74e4e4e510ab006b"

SIX_HEADERS = {
    "validate-algorithms",
    "validate-appkey",
    "validate-recvwindow",
    "validate-timestamp",
    "validate-signature",
    "content-type",
}


def xt() -> XT:
    return XT(API_KEY, SECRET, recv_window_ms=RW)


def spec(**overrides: object) -> TransferSpec:
    fields: dict[str, object] = {
        "currency": "usdt",
        "amount": "10",
        "from_account": "spot",
        "to_account": "usdt_futures",
    }
    fields.update(overrides)
    return xt().validate(**fields)


TRANSFER: dict[str, object] = {
    "currency": "usdt",
    "amount": "10",
    "from_account": "spot",
    "to_account": "usdt_futures",
}
FP = spec().fingerprint()


# -- the three documented vectors ---------------------------------------------------------------


def test_vector_post_transfer_with_body() -> None:
    """The POST vector with a JSON body signs to the documented signature."""
    signature = sign(
        api_key=API_KEY,
        secret=SECRET,
        method="POST",
        path="/v4/balance/transfer",
        timestamp_ms=TS,
        recv_window_ms=RW,
        body=VECTOR_BODY,
    )
    assert signature == VECTOR_POST_SIGNATURE


def test_vector_get_with_query() -> None:
    """The GET vector with a query string signs to the documented signature."""
    signature = sign(
        api_key=API_KEY,
        secret=SECRET,
        method="GET",
        path="/v4/balance",
        timestamp_ms=TS,
        recv_window_ms=RW,
        query={"currency": "usdt"},
    )
    assert signature == VECTOR_GET_QUERY_SIGNATURE


def test_vector_get_without_query_or_body() -> None:
    """The GET vector without query or body signs to the documented signature."""
    signature = sign(
        api_key=API_KEY,
        secret=SECRET,
        method="GET",
        path="/v4/balances",
        timestamp_ms=TS,
        recv_window_ms=RW,
    )
    assert signature == VECTOR_GET_SIGNATURE


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        ("#POST#/v4/balance/transfer#" + VECTOR_BODY, VECTOR_POST_SIGNATURE),
        ("#GET#/v4/balance#currency=usdt", VECTOR_GET_QUERY_SIGNATURE),
        ("#GET#/v4/balances", VECTOR_GET_SIGNATURE),
    ],
)
def test_vectors_follow_the_documented_string_to_sign(y: str, expected: str) -> None:
    """A plain HMAC over the documented X + Y string reproduces each vector."""
    x = (
        f"validate-algorithms=HmacSHA256&validate-appkey={API_KEY}"
        f"&validate-recvwindow={RW}&validate-timestamp={TS}"
    )
    digest = hmac.new(SECRET.encode(), (x + y).encode(), hashlib.sha256).hexdigest()
    assert digest == expected


def test_query_pairs_are_signed_in_key_order() -> None:
    """Query pairs are signed sorted by key, whatever order the mapping has."""

    def signed(query: dict[str, str]) -> str:
        return sign(
            api_key=API_KEY,
            secret=SECRET,
            method="GET",
            path="/v4/balance",
            timestamp_ms=TS,
            recv_window_ms=RW,
            query=query,
        )

    x = (
        f"validate-algorithms=HmacSHA256&validate-appkey={API_KEY}"
        f"&validate-recvwindow={RW}&validate-timestamp={TS}"
    )
    y = "#GET#/v4/balance#a=1&currency=usdt"
    expected = hmac.new(SECRET.encode(), (x + y).encode(), hashlib.sha256).hexdigest()
    assert signed({"a": "1", "currency": "usdt"}) == expected
    assert signed({"currency": "usdt", "a": "1"}) == expected


@pytest.mark.parametrize("position", [0, 10, len(VECTOR_BODY) // 2, len(VECTOR_BODY) - 1])
def test_changing_one_body_byte_changes_the_signature(position: int) -> None:
    """Flipping any single byte of the body yields a different signature."""
    original = VECTOR_BODY[position]
    replacement = "X" if original != "X" else "Y"
    tampered = VECTOR_BODY[:position] + replacement + VECTOR_BODY[position + 1 :]
    signature = sign(
        api_key=API_KEY,
        secret=SECRET,
        method="POST",
        path="/v4/balance/transfer",
        timestamp_ms=TS,
        recv_window_ms=RW,
        body=tampered,
    )
    assert signature != VECTOR_POST_SIGNATURE


def test_signature_depends_on_timestamp_and_recv_window() -> None:
    """Another timestamp or receive window gives another signature over the same body."""

    def signed(timestamp_ms: int, recv_window_ms: int) -> str:
        return sign(
            api_key=API_KEY,
            secret=SECRET,
            method="POST",
            path="/v4/balance/transfer",
            timestamp_ms=timestamp_ms,
            recv_window_ms=recv_window_ms,
            body=VECTOR_BODY,
        )

    assert signed(TS, RW) == VECTOR_POST_SIGNATURE
    assert len({signed(TS + 1, RW), signed(TS, RW + 1), VECTOR_POST_SIGNATURE}) == 3


# -- XT.transfer_request ------------------------------------------------------------------------


def test_transfer_request_carries_the_six_headers() -> None:
    """A signed transfer request carries all six documented headers with their values."""
    request = xt().transfer_request(VECTOR_BODY, TS)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert set(headers) == SIX_HEADERS
    assert headers["validate-algorithms"] == "HmacSHA256"
    assert headers["validate-appkey"] == API_KEY
    assert headers["validate-recvwindow"] == "5000"
    assert headers["validate-timestamp"] == str(TS)
    assert headers["content-type"] == "application/json"


def test_transfer_request_signature_matches_the_vector() -> None:
    """Signing the vector body at the vector timestamp gives the documented signature."""
    request = xt().transfer_request(VECTOR_BODY, TS)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["validate-signature"] == VECTOR_POST_SIGNATURE


def test_transfer_request_signature_verifies_over_the_exact_body_bytes() -> None:
    """The header signature is sign() over exactly the bytes the request will send."""
    body = xt().transfer_body(spec(amount="0.25"), "biz-1")
    request = xt().transfer_request(body, TS + 42)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert request.body is not None
    recomputed = sign(
        api_key=headers["validate-appkey"],
        secret=SECRET,
        method=request.method,
        path="/v4/balance/transfer",
        timestamp_ms=int(headers["validate-timestamp"]),
        recv_window_ms=int(headers["validate-recvwindow"]),
        body=request.body.decode(),
    )
    assert headers["validate-signature"] == recomputed
    assert request.body == body.encode()


def test_transfer_request_targets_the_transfer_endpoint() -> None:
    """The transfer request is a POST to /v4/balance/transfer on the configured host."""
    request = XT(API_KEY, SECRET, base_url="https://example.test/").transfer_request("{}", TS)
    assert request.method == "POST"
    assert request.url == "https://example.test/v4/balance/transfer"


def test_custom_recv_window_is_sent_and_signed() -> None:
    """A non-default receive window appears in the header and in the signed string."""
    venue = XT(API_KEY, SECRET, recv_window_ms=20000)
    request = venue.transfer_request(VECTOR_BODY, TS)
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["validate-recvwindow"] == "20000"
    assert headers["validate-signature"] == sign(
        api_key=API_KEY,
        secret=SECRET,
        method="POST",
        path="/v4/balance/transfer",
        timestamp_ms=TS,
        recv_window_ms=20000,
        body=VECTOR_BODY,
    )
    assert headers["validate-signature"] != VECTOR_POST_SIGNATURE


# -- bizId --------------------------------------------------------------------------------------


def test_bizid_is_deterministic_for_account_key_and_params() -> None:
    """Two XT instances with the same api key derive the same bizId for the same key and
    parameters, whatever the secret."""
    other = XT(API_KEY, "other-secret")
    assert xt().idempotency_token("k-1", FP) == other.idempotency_token("k-1", FP)
    assert xt().biz_id("k-1", **TRANSFER) == other.biz_id("k-1", **TRANSFER)


def test_biz_id_is_the_token_of_the_validated_spec() -> None:
    """biz_id(key, **transfer) is idempotency_token(key, validate(**transfer).fingerprint())."""
    assert xt().biz_id("k-1", **TRANSFER) == xt().idempotency_token("k-1", FP)
    # Parameters that validate to the same canonical spec name the same transfer.
    same = {**TRANSFER, "currency": "USDT", "amount": Decimal("10.00")}
    assert xt().biz_id("k-1", **same) == xt().biz_id("k-1", **TRANSFER)


def test_bizid_differs_for_another_key() -> None:
    """A different idempotency key yields a different bizId."""
    assert xt().idempotency_token("k-1", FP) != xt().idempotency_token("k-2", FP)
    assert xt().biz_id("k-1", **TRANSFER) != xt().biz_id("k-2", **TRANSFER)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "11"},
        {"currency": "btc"},
        {"from_account": "usdt_futures", "to_account": "spot"},
        {"to_account": "coin_futures"},
        {"to_account": "margin", "symbol": "btc_usdt"},
        {"to_account": "margin", "symbol": "eth_usdt"},
    ],
)
def test_bizid_differs_for_other_params(change: dict[str, object]) -> None:
    """The same key with other transfer parameters yields a different bizId."""
    other = {**TRANSFER, **change}
    assert xt().biz_id("k-1", **other) != xt().biz_id("k-1", **TRANSFER)
    assert xt().idempotency_token("k-1", spec(**change).fingerprint()) != xt().idempotency_token(
        "k-1", FP
    )


def test_bizid_differs_for_another_api_key() -> None:
    """The same idempotency key and parameters under another api key yield another bizId."""
    other = XT("another-key", SECRET)
    assert xt().idempotency_token("k-1", FP) != other.idempotency_token("k-1", FP)
    assert xt().biz_id("k-1", **TRANSFER) != other.biz_id("k-1", **TRANSFER)


def test_bizid_does_not_collide_across_a_field_boundary() -> None:
    """No shift of characters between api key, key and parameters yields the same bizId."""
    assert XT("ab", SECRET).idempotency_token("c", FP) != XT("a", SECRET).idempotency_token(
        "bc", FP
    )
    assert xt().idempotency_token("k-1" + FP[:1], FP[1:]) != xt().idempotency_token("k-1", FP)
    assert xt().idempotency_token("k-1", FP) != xt().idempotency_token("k-", "1" + FP)


@given(key=st.text(min_size=1, max_size=100))
def test_bizid_is_at_most_128_chars(key: str) -> None:
    """Every derived bizId fits XT's 128-character limit."""
    token = xt().idempotency_token(key, FP)
    assert 1 <= len(token) <= 128
    legacy = xt().legacy_token(key)
    assert 1 <= len(legacy) <= 128


@given(keys=st.sets(st.text(min_size=1, max_size=100), min_size=2, max_size=20))
def test_distinct_keys_give_distinct_bizids(keys: set[str]) -> None:
    """Distinct idempotency keys never share a bizId under one api key."""
    tokens = {xt().idempotency_token(k, FP) for k in keys}
    assert len(tokens) == len(keys)


@given(amounts=st.sets(st.integers(min_value=1, max_value=10**12), min_size=2, max_size=20))
def test_distinct_params_give_distinct_bizids(amounts: set[int]) -> None:
    """Distinct parameters under one key never share a bizId."""
    tokens = {xt().biz_id("k-1", **{**TRANSFER, "amount": str(a)}) for a in amounts}
    assert len(tokens) == len(amounts)


def test_bizid_is_not_the_legacy_token() -> None:
    """The bizId sent now is not xferkit 0.1's (api key, key) token for the same key."""
    assert xt().idempotency_token("k-1", FP) != xt().legacy_token("k-1")


def test_legacy_token_is_the_0_1_derivation() -> None:
    """legacy_token is uuid5 of the 0.1 namespace over (api key, NUL, key), as 0.1 sent it:
    the same for any secret and any parameters, another for another api key or key."""
    namespace = uuid.UUID("5b7f1c3e-8d2a-4e6b-9f10-0c1d2e3f4a5b")
    assert xt().legacy_token("k-1") == str(uuid.uuid5(namespace, f"{API_KEY}\x00k-1"))
    assert xt().legacy_token("k-1") == XT(API_KEY, "other-secret").legacy_token("k-1")
    assert xt().legacy_token("k-1") != xt().legacy_token("k-2")
    assert xt().legacy_token("k-1") != XT("another-key", SECRET).legacy_token("k-1")
    assert XT("ab", SECRET).legacy_token("c") != XT("a", SECRET).legacy_token("bc")


# -- transfer_body ------------------------------------------------------------------------------


def test_transfer_body_reproduces_the_vector_body() -> None:
    """The body for spot -> usdt_futures, 10 usdt is byte-identical to the vector's body."""
    body = xt().transfer_body(spec(), "7f1c2b9e-0000-4000-8000-000000000001")
    assert body == VECTOR_BODY


def test_transfer_body_is_compact_json_in_xt_field_order() -> None:
    """The body has no white space and lists bizId, from, to, currency, amount in that order."""
    body = xt().transfer_body(spec(currency="BTC", amount="0.5", to_account="finance"), "t")
    assert body == '{"bizId":"t","from":"SPOT","to":"FINANCE","currency":"btc","amount":"0.5"}'
    assert list(json.loads(body)) == ["bizId", "from", "to", "currency", "amount"]


def test_margin_body_puts_symbol_before_amount() -> None:
    """A LEVER transfer body carries the lowercase symbol between currency and amount."""
    body = xt().transfer_body(
        spec(from_account="margin", to_account="spot", symbol="BTC_USDT"), "t"
    )
    assert body == (
        '{"bizId":"t","from":"LEVER","to":"SPOT","currency":"usdt",'
        '"symbol":"btc_usdt","amount":"10"}'
    )


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1E+2"), "100"),
        (Decimal("0.00000001"), "0.00000001"),
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("10.500"), "10.5"),
        (Decimal("1.000E+3"), "1000"),
        ("123456789.123456789", "123456789.123456789"),
        (7, "7"),
    ],
)
def test_body_amount_is_a_plain_string(amount: object, text: str) -> None:
    """The amount is sent as a JSON string of plain digits, never with an exponent."""
    body = xt().transfer_body(spec(amount=amount), "t")
    assert f'"amount":"{text}"' in body
    assert json.loads(body)["amount"] == text


def test_body_amount_plain_even_for_an_unnormalised_spec() -> None:
    """A spec built directly with an exponent amount still serialises without an exponent."""
    raw = TransferSpec(
        venue="xt",
        currency="usdt",
        amount=Decimal("1E+2"),
        from_account="spot",
        to_account="usdt_futures",
    )
    assert json.loads(xt().transfer_body(raw, "t"))["amount"] == "100"


@given(
    amount=st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal("1000000000"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    ).filter(lambda d: d > 0)
)
def test_body_amount_round_trips_without_exponent(amount: Decimal) -> None:
    """For any positive amount the body's amount string has no exponent and equals it exactly."""
    text = json.loads(xt().transfer_body(spec(amount=amount), "t"))["amount"]
    assert isinstance(text, str)
    assert "e" not in text.lower()
    assert Decimal(text) == amount
