"""XT's error-code table and whole-response classification (shared/venues/xt.md)."""

from __future__ import annotations

import json

import pytest

from xferkit import (
    XT,
    AuthenticationError,
    InsufficientBalanceError,
    PermissionDeniedError,
    RateLimitError,
    TransferRejectedError,
    VenueError,
)
from xferkit._http import HttpResponse
from xferkit._outcomes import Ambiguous, Duplicate, NotProcessed, Rejected, Succeeded
from xferkit.venues.xt import classify_code

# The table in xt.md, written out code by code. Each entry: (code, outcome class, error type).
# Error type None means the outcome carries no error (ambiguous: resend the same bizId).
AMBIGUOUS_CODES = ["TRANSFER_007", "COMMON_002", "COMMON_003"]
DUPLICATE_CODES = ["FUND_001", "TRANSFER_001"]
CLOCK_CODES = ["AUTH_105"]
AUTH_CODES = [
    "AUTH_001",
    "AUTH_002",
    "AUTH_003",
    "AUTH_004",
    "AUTH_005",
    "AUTH_006",
    "AUTH_007",
    "AUTH_101",  # key unknown
    "AUTH_102",  # key inactive
    "AUTH_103",  # bad signature
]
PERMISSION_CODES = [
    "AUTH_104",  # IP not whitelisted
    "AUTH_106",  # key lacks permission
]
BALANCE_CODES = ["FUND_002", "TRANSFER_002"]
OTHER_REJECTED_CODES = [
    "FUND_003",
    "FUND_004",
    "FUND_005",
    "FUND_014",
    "FUND_015",
    "FUND_016",
    "FUND_017",
    "FUND_018",
    "FUND_019",
    "FUND_020",
    "FUND_021",
    "FUND_022",
    "FUND_044",
    "TRANSFER_003",
    "TRANSFER_004",
    "TRANSFER_005",
    "TRANSFER_006",
    "TRANSFER_008",
    "TRANSFER_009",
    "TRANSFER_010",
    "TRANSFER_011",
    "TRANSFER_012",
    "SYMBOL_001",
    "CURRENCY_001",
    "COMMON_001",
    "GATEWAY_0001",
    "GATEWAY_0002",
    "GATEWAY_0003",
    "GATEWAY_0004",
    "FAILURE",
]

TABLE: list[tuple[str, type, type[VenueError] | None]] = [
    *[(c, Ambiguous, None) for c in AMBIGUOUS_CODES],
    *[(c, Duplicate, TransferRejectedError) for c in DUPLICATE_CODES],
    *[(c, NotProcessed, AuthenticationError) for c in CLOCK_CODES],
    *[(c, Rejected, AuthenticationError) for c in AUTH_CODES],
    *[(c, Rejected, PermissionDeniedError) for c in PERMISSION_CODES],
    *[(c, Rejected, InsufficientBalanceError) for c in BALANCE_CODES],
    *[(c, Rejected, TransferRejectedError) for c in OTHER_REJECTED_CODES],
]

# The expanded list of every code xt.md names, independent of how TABLE groups them.
DOCUMENTED_CODES = (
    [f"AUTH_{n:03d}" for n in range(1, 8)]
    + [f"AUTH_{n:03d}" for n in range(101, 107)]
    + [f"FUND_{n:03d}" for n in range(1, 6)]
    + [f"FUND_{n:03d}" for n in range(14, 23)]
    + ["FUND_044"]
    + [f"TRANSFER_{n:03d}" for n in range(1, 13)]
    + ["SYMBOL_001", "CURRENCY_001"]
    + [f"COMMON_{n:03d}" for n in range(1, 4)]
    + [f"GATEWAY_{n:04d}" for n in range(1, 5)]
    + ["FAILURE"]
)

SUCCESS_BODY = b'{"rc":0,"mc":"SUCCESS","ma":[],"result":226972662307830528}'


def xt() -> XT:
    return XT("api-key", "s3cret-value")


def response(status: int, body: bytes | str | dict[str, object], **headers: str) -> HttpResponse:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return HttpResponse(
        status=status, headers={k.lower(): v for k, v in headers.items()}, body=body
    )


def error_envelope(code: str, message: str = "venue says no") -> dict[str, object]:
    return {"rc": 1, "mc": code, "ma": [message], "result": None}


def test_table_covers_every_documented_code_once() -> None:
    """The test table lists each of the 50 codes in xt.md exactly once."""
    codes = [code for code, _, _ in TABLE]
    assert len(codes) == len(set(codes)) == 50
    assert sorted(codes) == sorted(DOCUMENTED_CODES)


@pytest.mark.parametrize(("code", "kind", "error_type"), TABLE, ids=[c for c, _, _ in TABLE])
def test_classify_code(code: str, kind: type, error_type: type[VenueError] | None) -> None:
    """Each documented code lands in its class with the documented error type and details."""
    outcome = classify_code(code, "venue says no", http_status=200)
    assert type(outcome) is kind
    if error_type is None:
        assert not hasattr(outcome, "error")
        return
    error = outcome.error  # type: ignore[union-attr]
    assert type(error) is error_type
    assert error.venue == "xt"
    assert error.code == code
    assert error.message == "venue says no"
    assert error.http_status == 200


@pytest.mark.parametrize(("code", "kind", "error_type"), TABLE, ids=[c for c, _, _ in TABLE])
def test_classify_transfer_error_envelope(
    code: str, kind: type, error_type: type[VenueError] | None
) -> None:
    """An HTTP 200 rc=1 answer carrying a documented code is classified per the table."""
    outcome = xt().classify_transfer(response(200, error_envelope(code, "detail")))
    assert type(outcome) is kind
    if error_type is not None:
        error = outcome.error  # type: ignore[union-attr]
        assert type(error) is error_type
        assert error.code == code
        assert error.message.endswith("detail")


def test_clock_code_asks_for_a_resync() -> None:
    """AUTH_105 (timestamp outside the window) is not-processed and asks for a clock resync."""
    outcome = xt().classify_transfer(response(200, error_envelope("AUTH_105")))
    assert isinstance(outcome, NotProcessed)
    assert outcome.resync_clock is True
    assert isinstance(outcome.error, AuthenticationError)


@pytest.mark.parametrize("code", [c for c, kind, _ in TABLE if kind is not NotProcessed])
def test_other_codes_do_not_ask_for_a_resync(code: str) -> None:
    """No code other than AUTH_105 requests a clock resync."""
    outcome = classify_code(code, "m")
    assert not getattr(outcome, "resync_clock", False)


@pytest.mark.parametrize("code", ["FUND_999", "AUTH_999", "SOMETHING_NEW", "transfer_001"])
def test_unknown_code_is_ambiguous(code: str) -> None:
    """A code missing from the table is ambiguous (safe on XT: the resend is de-duplicated)."""
    outcome = xt().classify_transfer(response(200, error_envelope(code)))
    assert isinstance(outcome, Ambiguous)


# -- whole responses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "transfer_id"),
    [
        (SUCCESS_BODY, "226972662307830528"),
        (b'{"rc":0,"mc":"SUCCESS","ma":[],"result":9007199254740993}', "9007199254740993"),
        (b'{"rc":0,"mc":"SUCCESS","ma":[],"result":"226972662307830529"}', "226972662307830529"),
    ],
)
def test_success_keeps_large_ids_exact(body: bytes, transfer_id: str) -> None:
    """A success answer yields the transfer id as the exact decimal string, even above 2**53."""
    outcome = xt().classify_transfer(response(200, body))
    assert outcome == Succeeded(transfer_id)
    assert isinstance(outcome.transfer_id, str)


@pytest.mark.parametrize(
    "body",
    [
        b'{"rc":0,"mc":"SUCCESS","ma":[]}',
        b'{"rc":0,"mc":"SUCCESS","ma":[],"result":null}',
        b'{"rc":0,"mc":"SUCCESS","ma":[],"result":{}}',
    ],
)
def test_success_without_result_is_ambiguous(body: bytes) -> None:
    """rc=0 without a transfer id is ambiguous, not a success and not a refusal."""
    assert isinstance(xt().classify_transfer(response(200, body)), Ambiguous)


def test_http_429_is_not_processed_rate_limit_with_retry_after() -> None:
    """HTTP 429 is not-processed with a RateLimitError and the Retry-After seconds."""
    outcome = xt().classify_transfer(response(429, b"", **{"Retry-After": "3"}))
    assert isinstance(outcome, NotProcessed)
    assert isinstance(outcome.error, RateLimitError)
    assert outcome.error.http_status == 429
    assert outcome.retry_after == 3.0
    assert outcome.resync_clock is False


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "0.5"}, 0.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-1"}, None),
    ],
)
def test_http_429_retry_after_variants(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After in seconds is parsed; absent, negative or date forms give no hint."""
    outcome = xt().classify_transfer(response(429, b"too many", **headers))
    assert isinstance(outcome, NotProcessed)
    assert outcome.retry_after == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize(
    "body", [b"", b"<html>bad gateway</html>", json.dumps(error_envelope("FUND_002")).encode()]
)
def test_server_errors_are_ambiguous(status: int, body: bytes) -> None:
    """HTTP 500/502/503/504 are ambiguous whatever the body says."""
    assert isinstance(xt().classify_transfer(response(status, body)), Ambiguous)


def test_server_error_passes_retry_after_on() -> None:
    """A 503 with Retry-After keeps the hint for the backoff."""
    outcome = xt().classify_transfer(response(503, b"", **{"Retry-After": "2"}))
    assert isinstance(outcome, Ambiguous)
    assert outcome.retry_after == 2.0


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>ok</html>", b"SUCCESS", b"\xff\xfe\x00", b'{"rc":0,', b"[1, 2]", b'"SUCCESS"'],
)
def test_non_json_or_non_object_200_is_ambiguous(body: bytes) -> None:
    """An HTTP 200 whose body is not a JSON object is ambiguous."""
    assert isinstance(xt().classify_transfer(response(200, body)), Ambiguous)


def test_error_envelope_without_code_is_ambiguous() -> None:
    """rc=1 without an mc code is ambiguous: nothing says it was refused."""
    outcome = xt().classify_transfer(response(200, {"rc": 1, "ma": [], "result": None}))
    assert isinstance(outcome, Ambiguous)


def test_rejection_message_joins_the_ma_list() -> None:
    """The error message says what the code means, then the venue's ma arguments; with
    neither (an unknown code, empty ma) it is the code."""
    with_messages = xt().classify_transfer(
        response(200, {"rc": 1, "mc": "FUND_002", "ma": ["balance", "too low"]})
    )
    without = xt().classify_transfer(response(200, {"rc": 1, "mc": "FUND_002", "ma": []}))
    assert isinstance(with_messages, Rejected)
    assert isinstance(without, Rejected)
    assert "balance" in with_messages.error.message
    assert "too low" in with_messages.error.message
    assert with_messages.error.message == "insufficient balance; balance; too low"
    assert without.error.message == "insufficient balance"
    unknown = xt().classify_transfer(response(200, {"rc": 1, "mc": "FUND_005", "ma": []}))
    assert isinstance(unknown, Rejected)
    assert unknown.error.message == "FUND_005"
