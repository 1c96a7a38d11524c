"""HTX's error-code table and whole-response classification (shared/venues/htx.md)."""

from __future__ import annotations

import json

import pytest

from xferkit import (
    HTX,
    AuthenticationError,
    InsufficientBalanceError,
    PermissionDeniedError,
    RateLimitError,
    TransferRejectedError,
    VenueError,
)
from xferkit._http import HttpResponse
from xferkit._outcomes import Ambiguous, NotProcessed, Rejected, Succeeded
from xferkit.venues.htx import classify_code


def span(first: int, last: int) -> list[str]:
    return [str(n) for n in range(first, last + 1)]


# The table in htx.md, row by row, with the ranges written out.
NOT_PROCESSED_AUTH = ["api-signature-not-valid", "login-required", "512", "513", "1003"]
NOT_PROCESSED_PERMISSION = ["403"]
NOT_PROCESSED_RATE = ["429", "base-request-exceed-frequency-limit", "rate-too-many-requests"]
BALANCE = ["1301", "1047", "1048", "dw-insufficient-balance"]
OTHER_REJECTED = [
    "501",
    "502",
    "504",
    *span(10000, 10011),
    "20001",
    "1010",
    "1012",
    "1013",
    "1018",
    "1089",
    "1098",
    "1099",
    *span(1102, 1114),
    *span(1303, 1315),
    "1319",
    "1320",
    "1322",
    *span(1327, 1331),
    "1460",
    "2014",
    "4001",
]
AMBIGUOUS = [
    "timeout",
    "gateway-internal-error",
    "500",
    "1030",
    "1300",
    "1302",
    "1316",
    "1317",
    "1318",
    "1321",
    "1323",
]

# Each entry: (code, outcome class, error type); None means the outcome carries no error.
TABLE: list[tuple[str, type, type[VenueError] | None]] = [
    *[(c, NotProcessed, AuthenticationError) for c in NOT_PROCESSED_AUTH],
    *[(c, NotProcessed, PermissionDeniedError) for c in NOT_PROCESSED_PERMISSION],
    *[(c, NotProcessed, RateLimitError) for c in NOT_PROCESSED_RATE],
    *[(c, Rejected, InsufficientBalanceError) for c in BALANCE],
    *[(c, Rejected, TransferRejectedError) for c in OTHER_REJECTED],
    *[(c, Ambiguous, None) for c in AMBIGUOUS],
]
IDS = [code for code, _, _ in TABLE]
NUMERIC = [(c, k, e) for c, k, e in TABLE if c.isdigit()]
NUMERIC_IDS = [code for code, _, _ in NUMERIC]

CLOCK_MESSAGE = "Invalid submission time or incorrect time format"

# Codes htx.md does not list, including the neighbours of every listed range.
UNKNOWN_CODES = [
    "1101",
    "1115",
    "1326",
    "1324",
    "1332",
    "9999",
    "10012",
    "9999999",
    "200",
    "API-SIGNATURE-NOT-VALID",
    "some-new-error",
    "",
]


def htx() -> HTX:
    return HTX("access-key", "s3cret-value")


def response(status: int, body: bytes | str | dict[str, object], **headers: str) -> HttpResponse:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return HttpResponse(
        status=status, headers={k.lower(): v for k, v in headers.items()}, body=body
    )


def new_envelope(code: str | int, message: str = "venue says no") -> dict[str, object]:
    return {"code": code, "data": None, "message": message, "success": False}


def old_envelope(code: str, message: str = "venue says no") -> dict[str, object]:
    return {"status": "error", "err-code": code, "err-msg": message, "data": None}


def check(outcome: object, kind: type, error_type: type[VenueError] | None, code: str) -> None:
    assert type(outcome) is kind
    if error_type is None:
        assert not hasattr(outcome, "error")
        return
    error = outcome.error  # type: ignore[attr-defined]
    assert type(error) is error_type
    assert error.venue == "htx"
    assert error.code == code


# -- the table ----------------------------------------------------------------------------------


def test_table_lists_each_documented_code_once() -> None:
    """The test table holds the 84 codes of htx.md's table, each exactly once."""
    assert len(IDS) == len(set(IDS)) == 84
    assert len(OTHER_REJECTED) == 60


@pytest.mark.parametrize(("code", "kind", "error_type"), TABLE, ids=IDS)
def test_classify_code(code: str, kind: type, error_type: type[VenueError] | None) -> None:
    """Each documented code lands in its class with the documented error type and details."""
    outcome = classify_code(code, "venue says no", http_status=200)
    check(outcome, kind, error_type, code)
    if error_type is not None:
        error = outcome.error  # type: ignore[union-attr]
        assert error.message == "venue says no"
        assert error.http_status == 200


@pytest.mark.parametrize(("code", "kind", "error_type"), TABLE, ids=IDS)
def test_new_envelope_with_string_code(
    code: str, kind: type, error_type: type[VenueError] | None
) -> None:
    """A success:false answer whose code is a string is classified per the table."""
    outcome = htx().classify_transfer(response(200, new_envelope(code, "detail")))
    check(outcome, kind, error_type, code)
    if error_type is not None:
        assert outcome.error.message == "detail"  # type: ignore[union-attr]
        assert outcome.error.http_status == 200  # type: ignore[union-attr]


@pytest.mark.parametrize(("code", "kind", "error_type"), NUMERIC, ids=NUMERIC_IDS)
def test_new_envelope_with_integer_code(
    code: str, kind: type, error_type: type[VenueError] | None
) -> None:
    """A success:false answer whose code is a JSON integer is classified as its string."""
    outcome = htx().classify_transfer(response(200, new_envelope(int(code))))
    check(outcome, kind, error_type, code)


@pytest.mark.parametrize(("code", "kind", "error_type"), TABLE, ids=IDS)
def test_old_envelope(code: str, kind: type, error_type: type[VenueError] | None) -> None:
    """A status:error answer with err-code/err-msg is classified per the table."""
    outcome = htx().classify_transfer(response(200, old_envelope(code, "older detail")))
    check(outcome, kind, error_type, code)
    if error_type is not None:
        assert outcome.error.message == "older detail"  # type: ignore[union-attr]


@pytest.mark.parametrize("code", UNKNOWN_CODES)
def test_unknown_code_is_ambiguous(code: str) -> None:
    """A code missing from the table is ambiguous: reconcile, never call it a refusal."""
    assert isinstance(classify_code(code, "m"), Ambiguous)
    assert isinstance(htx().classify_transfer(response(200, new_envelope(code))), Ambiguous)


@pytest.mark.parametrize("code", ["1101", "1332", "9999"])
def test_unknown_code_in_old_envelope_is_ambiguous(code: str) -> None:
    """An unknown err-code in the older envelope is ambiguous too."""
    assert isinstance(htx().classify_transfer(response(200, old_envelope(code))), Ambiguous)


# -- clock skew ---------------------------------------------------------------------------------


def test_clock_skew_message_asks_for_a_resync() -> None:
    """api-signature-not-valid with "Invalid submission time" is not processed and resyncs."""
    outcome = classify_code("api-signature-not-valid", CLOCK_MESSAGE)
    assert isinstance(outcome, NotProcessed)
    assert outcome.resync_clock is True
    assert type(outcome.error) is AuthenticationError


def test_clock_skew_in_the_old_envelope_asks_for_a_resync() -> None:
    """The documented gateway answer for clock skew asks for a resync."""
    body = old_envelope("api-signature-not-valid", f"Signature not valid: {CLOCK_MESSAGE}")
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, NotProcessed)
    assert outcome.resync_clock is True
    assert type(outcome.error) is AuthenticationError


@pytest.mark.parametrize(
    "message",
    [
        "Signature not valid: 无效的提交时间，或时间格式错误",  # noqa: RUF001 - HTX's comma
        "无效的提交时间",
        "提交时间格式错误",
        "Signature not valid: Invalid submission time or incorrect time format",
    ],
)
def test_both_clock_skew_wordings_ask_for_a_resync(message: str) -> None:
    """The English and the older Chinese-only clock-skew messages both ask for a resync."""
    body = old_envelope("api-signature-not-valid", message)
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, NotProcessed)
    assert outcome.resync_clock is True


@pytest.mark.parametrize("body", [b"<html>403 Forbidden</html>", b"", b"Forbidden"])
def test_bare_http_403_is_not_processed(body: bytes) -> None:
    """An HTTP 403 without an envelope is not processed (htx.md), never ambiguous."""
    outcome = htx().classify_transfer(HttpResponse(status=403, headers={}, body=body))
    assert isinstance(outcome, NotProcessed)
    assert type(outcome.error) is PermissionDeniedError
    assert outcome.error.http_status == 403


def test_bad_signature_without_the_clock_message_does_not_resync() -> None:
    """A signature error for another reason is not processed but asks for no resync."""
    body = old_envelope("api-signature-not-valid", "Signature not valid: Incorrect Access key")
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, NotProcessed)
    assert outcome.resync_clock is False


@pytest.mark.parametrize("code", IDS)
def test_no_code_resyncs_with_an_ordinary_message(code: str) -> None:
    """No code asks for a clock resync when the message says nothing about the time."""
    outcome = classify_code(code, "venue says no")
    assert getattr(outcome, "resync_clock", False) is False


# -- success ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "transfer_id"),
    [
        (b'{"code":200,"data":176104252,"message":"Succeed","success":true}', "176104252"),
        (b'{"code":"200","data":176104252,"message":"Succeed","success":true}', "176104252"),
        (b'{"code":200,"data":"176104252","message":"Succeed","success":true}', "176104252"),
        (b'{"code":"200","data":"176104252","success":true}', "176104252"),
        (b'{"code":200,"data":9007199254740993,"success":true}', "9007199254740993"),
        (
            b'{"code":200,"data":123456789012345678901234567890,"success":true}',
            "123456789012345678901234567890",
        ),
        (b'{"code":200,"data":"9007199254740995","success":true}', "9007199254740995"),
    ],
)
def test_success_keeps_the_id_as_an_exact_string(body: bytes, transfer_id: str) -> None:
    """success true, code 200 and data present: Succeeded with the id as its exact string."""
    outcome = htx().classify_transfer(response(200, body))
    assert outcome == Succeeded(transfer_id)
    assert isinstance(outcome.transfer_id, str)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"code": 200, "success": True}, id="no data"),
        pytest.param({"code": 200, "data": None, "success": True}, id="data null"),
        pytest.param({"code": 200, "data": "", "success": True}, id="data empty"),
        pytest.param({"code": 200, "data": {}, "success": True}, id="data object"),
        pytest.param({"code": 200, "data": [], "success": True}, id="data list"),
        pytest.param({"code": 500, "data": 1, "success": True}, id="success with code 500"),
        pytest.param({"code": "500", "data": 1, "success": True}, id="success with code '500'"),
        pytest.param({"data": 1, "success": True}, id="success without code"),
        pytest.param({"code": 201, "data": 1, "success": True}, id="success with code 201"),
    ],
)
def test_success_without_all_three_conditions_is_ambiguous(body: dict[str, object]) -> None:
    """Success needs success true, code 200 and data; anything less is ambiguous, not success."""
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, Ambiguous)


@pytest.mark.parametrize("data", [True, False])
def test_success_with_a_boolean_data_is_ambiguous(data: bool) -> None:
    """A boolean data is no transfer id: ambiguous (safe under either reading), not an id "True"."""
    body = {"code": 200, "data": data, "message": "Succeed", "success": True}
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, Ambiguous), outcome


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"code": 200, "data": 1}, id="code 200 without success"),
        pytest.param({"code": 200, "data": 1, "success": False}, id="success false"),
        pytest.param({"code": 200, "data": 1, "success": None}, id="success null"),
    ],
)
def test_code_200_without_success_true_is_not_success(body: dict[str, object]) -> None:
    """Code 200 with data but without success true is not taken as success (nor a refusal)."""
    outcome = htx().classify_transfer(response(200, body))
    assert not isinstance(outcome, Succeeded)
    assert not isinstance(outcome, Rejected)


def test_documented_failure_example() -> None:
    """htx.md's failure example (1301) is an insufficient-balance refusal with its message."""
    body = b'{"code":1301,"data":null,"message":"Insufficient amount available","success":false}'
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, Rejected)
    assert type(outcome.error) is InsufficientBalanceError
    assert outcome.error.code == "1301"
    assert outcome.error.message == "Insufficient amount available"
    assert outcome.error.http_status == 200


# -- HTTP-level answers -------------------------------------------------------------------------


def test_http_429_is_not_processed_with_retry_after() -> None:
    """HTTP 429 is not processed, a rate-limit error, carrying the Retry-After seconds."""
    outcome = htx().classify_transfer(response(429, b"Too Many Requests", **{"Retry-After": "3"}))
    assert isinstance(outcome, NotProcessed)
    assert type(outcome.error) is RateLimitError
    assert outcome.error.http_status == 429
    assert outcome.retry_after == 3.0


def test_http_429_without_retry_after() -> None:
    """HTTP 429 without Retry-After is not processed with no retry hint."""
    outcome = htx().classify_transfer(response(429, {"status": "error"}))
    assert isinstance(outcome, NotProcessed)
    assert outcome.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
@pytest.mark.parametrize(
    "body",
    [
        b"<html>Bad Gateway</html>",
        b"",
        json.dumps(new_envelope(1301)).encode(),
        b'{"code":200,"data":1,"success":true}',
    ],
    ids=["html", "empty", "refusal body", "success body"],
)
def test_http_5xx_is_ambiguous_whatever_the_body(status: int, body: bytes) -> None:
    """Any HTTP 5xx is ambiguous, even with a body that looks definitive."""
    outcome = htx().classify_transfer(response(status, body))
    assert isinstance(outcome, Ambiguous)


def test_http_503_keeps_retry_after() -> None:
    """An ambiguous 503 still carries the Retry-After hint."""
    outcome = htx().classify_transfer(response(503, b"", **{"Retry-After": "7"}))
    assert isinstance(outcome, Ambiguous)
    assert outcome.retry_after == 7.0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>ok</html>",
        b"Succeed",
        b'{"code":200,"data":176104252,',
        b"[1, 2]",
        b"null",
        b"176104252",
        b'"Succeed"',
        b'{"unexpected":"shape"}',
    ],
)
def test_http_200_without_a_json_envelope_is_ambiguous(body: bytes) -> None:
    """A 200 answer that is not JSON, or not a known envelope, is ambiguous."""
    outcome = htx().classify_transfer(response(200, body))
    assert isinstance(outcome, Ambiguous)


def test_old_envelope_with_ok_status_but_no_transfer_fields_is_ambiguous() -> None:
    """status ok without the transfer envelope's fields is not taken as success."""
    outcome = htx().classify_transfer(response(200, {"status": "ok", "data": 1}))
    assert isinstance(outcome, Ambiguous)


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (401, old_envelope("login-required"), AuthenticationError),
        (403, new_envelope(403), PermissionDeniedError),
        (400, new_envelope(1331), TransferRejectedError),
    ],
)
def test_http_4xx_with_an_envelope_is_classified_by_its_code(
    status: int, body: dict[str, object], error_type: type[VenueError]
) -> None:
    """A 4xx answer carrying an envelope is classified by its code and keeps the HTTP status."""
    outcome = htx().classify_transfer(response(status, body))
    assert type(outcome.error) is error_type  # type: ignore[union-attr]
    assert outcome.error.http_status == status  # type: ignore[union-attr]
