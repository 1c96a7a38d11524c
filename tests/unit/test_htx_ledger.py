"""HTX reconciliation: spot account id, ledger pages and matching rows (shared/venues/htx.md)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import attrs
import pytest

from xferkit import HTX, InvalidRequestError
from xferkit._http import HttpResponse
from xferkit.venues._base import LedgerPage, LedgerRow, TransferSpec


def htx() -> HTX:
    return HTX("access-key", "s3cret-value")


def response(body: bytes | str | dict[str, Any] | list[Any], status: int = 200) -> HttpResponse:
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return HttpResponse(status=status, body=body)


def spec(source: str, target: str, amount: str = "10.5", currency: str = "usdt") -> TransferSpec:
    return htx().validate(currency=currency, amount=amount, from_account=source, to_account=target)


# -- parse_spot_account_id ----------------------------------------------------------------------


def test_spot_account_is_found() -> None:
    """The spot account's id is found among the user's accounts, as a string."""
    body = {
        "status": "ok",
        "data": [
            {"id": 10000002, "type": "margin", "subtype": "btcusdt", "state": "working"},
            {"id": 10000001, "type": "spot", "subtype": "", "state": "working"},
            {"id": 10000003, "type": "otc", "subtype": "", "state": "working"},
        ],
    }
    assert htx().parse_spot_account_id(response(body)) == "10000001"


def test_spot_account_id_is_exact_above_2_53() -> None:
    """A spot account id above 2**53 is kept digit for digit."""
    body = b'{"status":"ok","data":[{"id":9007199254740993,"type":"spot","state":"working"}]}'
    assert htx().parse_spot_account_id(response(body)) == "9007199254740993"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "ok", "data": []}, id="empty list"),
        pytest.param({"status": "ok", "data": None}, id="null data"),
        pytest.param(
            {"status": "ok", "data": [{"id": 1, "type": "margin"}, {"id": 2, "type": "otc"}]},
            id="no spot",
        ),
    ],
)
def test_no_spot_account_is_a_value_error(body: dict[str, Any]) -> None:
    """An accounts list without a spot account raises ValueError."""
    with pytest.raises(ValueError, match="spot"):
        htx().parse_spot_account_id(response(body))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(
            {
                "status": "error",
                "err-code": "api-signature-not-valid",
                "err-msg": "x",
                "data": None,
            },
            200,
            id="error envelope",
        ),
        pytest.param(
            {"status": "error", "err-code": "login-required", "err-msg": "x", "data": None},
            401,
            id="error envelope 401",
        ),
        pytest.param(
            {"status": "ok", "data": [{"id": 1, "type": "spot"}]}, 500, id="spot under HTTP 500"
        ),
        pytest.param(b"<html>oops</html>", 200, id="not JSON"),
        pytest.param(b"[]", 200, id="JSON array"),
        pytest.param(b"null", 200, id="JSON null"),
        pytest.param({"status": "ok", "data": [5]}, 200, id="account not an object"),
        pytest.param({"status": "ok", "data": [{"type": "spot"}]}, 200, id="spot without id"),
    ],
)
def test_accounts_error_is_a_value_error(body: Any, status: int) -> None:
    """An error envelope, a non-200 answer, or a body not shaped as documented raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the interface promises ValueError only
        htx().parse_spot_account_id(response(body, status))


# -- parse_ledger -------------------------------------------------------------------------------

LEDGER_BODY = (
    b'{"code":200,"message":"success","data":['
    b'{"accountId":10000001,"currency":"usdt","transactAmt":-10.5,"transactType":"transfer",'
    b'"transferType":"spot-to-linear-swap","transactId":123456789012345678901,'
    b'"transactTime":1494512370000,"transferer":10000001,"transferee":20000002},'
    b'{"accountId":10000001,"currency":"USDT","transactAmt":"12345678901234567.12345678",'
    b'"transactType":"transfer","transferType":"linear-swap-to-spot","transactId":"42",'
    b'"transactTime":"1494512370001","transferer":20000002,"transferee":10000001}'
    b'],"nextId":987654321987654321987,"ok":true}'
)


def test_parse_ledger_rows_are_exact() -> None:
    """Rows parse to exact Decimals (number or string), exact ids and lowercase currencies."""
    page = htx().parse_ledger(response(LEDGER_BODY))
    assert page == LedgerPage(
        rows=[
            LedgerRow(
                transact_id="123456789012345678901",
                currency="usdt",
                amount=Decimal("-10.5"),
                transfer_type="spot-to-linear-swap",
                transact_time_ms=1494512370000,
            ),
            LedgerRow(
                transact_id="42",
                currency="usdt",
                amount=Decimal("12345678901234567.12345678"),
                transfer_type="linear-swap-to-spot",
                transact_time_ms=1494512370001,
            ),
        ],
        next_id="987654321987654321987",
    )


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0.00000001", "0.00000001"),
        ("-0.00000001", "-0.00000001"),
        ('"0.00000001"', "0.00000001"),
        ("0.1", "0.1"),
        ("-12345678901234567.12345678", "-12345678901234567.12345678"),
        ("10", "10"),
        ('"-10"', "-10"),
    ],
)
def test_transact_amount_is_parsed_exactly(literal: str, expected: str) -> None:
    """transactAmt as a JSON number or string becomes the exact Decimal, never via float."""
    body = (
        '{"code":200,"data":[{"currency":"usdt","transactAmt":' + literal + ","
        '"transferType":"spot-to-otc","transactId":1,"transactTime":1}]}'
    )
    (parsed,) = htx().parse_ledger(response(body)).rows
    assert parsed.amount == Decimal(expected)
    assert parsed.amount.as_tuple() == Decimal(expected).as_tuple()


def test_last_page_has_no_next_id() -> None:
    """A page without nextId is the last one (next_id None)."""
    body = {"code": 200, "message": "success", "data": [], "ok": True}
    assert htx().parse_ledger(response(body)) == LedgerPage(rows=[], next_id=None)


def test_next_id_as_string_is_kept() -> None:
    """A string nextId is passed on unchanged."""
    body = {"code": "200", "data": [], "nextId": "1000"}
    assert htx().parse_ledger(response(body)).next_id == "1000"


def test_row_without_transfer_type_keeps_none() -> None:
    """A row with no transferType parses with transfer_type None."""
    body = {
        "code": 200,
        "data": [{"currency": "usdt", "transactAmt": "1", "transactId": 7, "transactTime": 5}],
    }
    (parsed,) = htx().parse_ledger(response(body)).rows
    assert parsed.transfer_type is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(
            {"status": "error", "err-code": "login-required", "err-msg": "x", "data": None},
            200,
            id="old error envelope",
        ),
        pytest.param(
            {"code": 2002, "message": "invalid field value", "data": None, "ok": False},
            200,
            id="code not 200",
        ),
        pytest.param({"code": 200, "data": []}, 500, id="HTTP 500"),
        pytest.param({"message": "success", "data": []}, 200, id="no code"),
        pytest.param(b"<html>oops</html>", 200, id="not JSON"),
        pytest.param(b"[]", 200, id="JSON array"),
        pytest.param(b"null", 200, id="JSON null"),
        pytest.param(b'"success"', 200, id="JSON string"),
    ],
)
def test_ledger_error_is_a_value_error(body: Any, status: int) -> None:
    """An error envelope, a non-200 code or status, or a body that is not a page: ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the interface promises ValueError only
        htx().parse_ledger(response(body, status))


GOOD_ROW = {
    "currency": "usdt",
    "transactAmt": "-1",
    "transferType": "spot-to-otc",
    "transactId": 1,
    "transactTime": 1,
}


@pytest.mark.parametrize(
    "row",
    [
        pytest.param({k: v for k, v in GOOD_ROW.items() if k != "transactAmt"}, id="no amount"),
        pytest.param({k: v for k, v in GOOD_ROW.items() if k != "transactId"}, id="no id"),
        pytest.param({k: v for k, v in GOOD_ROW.items() if k != "currency"}, id="no currency"),
        pytest.param({k: v for k, v in GOOD_ROW.items() if k != "transactTime"}, id="no time"),
        pytest.param({**GOOD_ROW, "transactAmt": "abc"}, id="amount not a number"),
        pytest.param({**GOOD_ROW, "transactAmt": None}, id="amount null"),
        pytest.param({**GOOD_ROW, "transactAmt": True}, id="amount bool"),
        pytest.param({**GOOD_ROW, "transactAmt": "NaN"}, id="amount NaN"),
        pytest.param({**GOOD_ROW, "transactAmt": "sNaN"}, id="amount sNaN"),
        pytest.param({**GOOD_ROW, "transactAmt": "-Infinity"}, id="amount infinite"),
        pytest.param({**GOOD_ROW, "transactTime": "noon"}, id="time not a number"),
        pytest.param("a row", id="string row"),
        pytest.param(None, id="null row"),
        pytest.param(5, id="number row"),
    ],
)
def test_malformed_row_is_a_value_error(row: Any) -> None:
    """A row missing a field or holding a non-number is a ValueError, never a guess."""
    body = {"code": 200, "data": [GOOD_ROW, row]}
    with pytest.raises(ValueError):  # noqa: PT011 - the interface promises ValueError only
        htx().parse_ledger(response(body))


# -- ledger_matches -----------------------------------------------------------------------------

# (from, to, sign of the spot ledger's transactAmt, transferType as htx.md names it)
DIRECTIONS = [
    ("spot", "usdt_futures", -1, "spot-to-linear-swap"),
    ("usdt_futures", "spot", +1, "linear-swap-to-spot"),
    ("spot", "coin_futures", -1, "dm-spot-to-swap"),
    ("coin_futures", "spot", +1, "dm-swap-to-spot"),
    ("spot", "futures", -1, "spot-to-futures"),
    ("futures", "spot", +1, "futures-to-spot"),
    ("spot", "otc", -1, "spot-to-otc"),
    ("otc", "spot", +1, "otc-to-spot"),
]
DIRECTION_IDS = [f"{s}->{t}" for s, t, _, _ in DIRECTIONS]
ALL_TYPES = [transfer_type for _, _, _, transfer_type in DIRECTIONS]


def row(
    amount: str, transfer_type: str | None, currency: str = "usdt", transact_id: str = "1"
) -> LedgerRow:
    return LedgerRow(
        transact_id=transact_id,
        currency=currency,
        amount=Decimal(amount),
        transfer_type=transfer_type,
        transact_time_ms=1494512370000,
    )


def signed(sign: int, amount: str = "10.5") -> str:
    return amount if sign > 0 else f"-{amount}"


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
def test_the_right_row_matches(source: str, target: str, sign: int, transfer_type: str) -> None:
    """Right currency, |amount|, sign on the spot account and transferType: a match."""
    assert htx().ledger_matches(row(signed(sign), transfer_type), spec(source, target))


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
def test_the_wrong_sign_does_not_match(
    source: str, target: str, sign: int, transfer_type: str
) -> None:
    """The right amount and type with the opposite sign on the spot account does not match."""
    assert not htx().ledger_matches(row(signed(-sign), transfer_type), spec(source, target))


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
def test_another_transfer_type_does_not_match(
    source: str, target: str, sign: int, transfer_type: str
) -> None:
    """The right amount and sign under any other direction's transferType does not match."""
    for other in ALL_TYPES:
        if other != transfer_type:
            matched = htx().ledger_matches(row(signed(sign), other), spec(source, target))
            assert matched is False, other


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
def test_the_reverse_row_does_not_match(
    source: str, target: str, sign: int, transfer_type: str
) -> None:
    """The reverse transfer's row (opposite sign and type) does not match."""
    reverse = next(t for s, d, _, t in DIRECTIONS if (s, d) == (target, source))
    assert not htx().ledger_matches(row(signed(-sign), reverse), spec(source, target))


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
@pytest.mark.parametrize("amount", ["10.50000001", "10.49999999", "105", "1.05", "0"])
def test_another_amount_does_not_match(
    source: str, target: str, sign: int, transfer_type: str, amount: str
) -> None:
    """A row for any other amount does not match, however close."""
    assert not htx().ledger_matches(row(signed(sign, amount), transfer_type), spec(source, target))


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
def test_another_currency_does_not_match(
    source: str, target: str, sign: int, transfer_type: str
) -> None:
    """A row in another currency does not match."""
    assert not htx().ledger_matches(
        row(signed(sign), transfer_type, currency="usdc"), spec(source, target)
    )


def test_equal_amount_written_differently_matches() -> None:
    """|amount| is compared as a number: -10.50 in the ledger matches 10.5."""
    assert htx().ledger_matches(row("-10.50", "spot-to-linear-swap"), spec("spot", "usdt_futures"))


def test_parsed_uppercase_currency_matches() -> None:
    """A ledger row in USDT (uppercase) matches a usdt transfer once parsed."""
    body = {
        "code": 200,
        "data": [
            {
                "currency": "USDT",
                "transactAmt": "-10.5",
                "transferType": "spot-to-linear-swap",
                "transactId": 9,
                "transactTime": 1,
            }
        ],
    }
    (parsed,) = htx().parse_ledger(response(body)).rows
    assert htx().ledger_matches(parsed, spec("spot", "usdt_futures"))


def test_tiny_amount_matches_exactly() -> None:
    """A 1e-8 transfer matches its 1e-8 row and not a 2e-8 one."""
    wanted = spec("spot", "otc", amount="0.00000001")
    assert htx().ledger_matches(row("-0.00000001", "spot-to-otc"), wanted)
    assert not htx().ledger_matches(row("-0.00000002", "spot-to-otc"), wanted)


# -- can_reconcile ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "sign", "transfer_type"), DIRECTIONS, ids=DIRECTION_IDS
)
def test_transfers_touching_spot_can_reconcile(
    source: str, target: str, sign: int, transfer_type: str
) -> None:
    """Every transfer into or out of spot shows in the spot ledger."""
    assert htx().can_reconcile(spec(source, target))


@pytest.mark.parametrize(
    ("source", "target"), [("coin_futures", "futures"), ("futures", "coin_futures")]
)
def test_coin_futures_and_futures_cannot_reconcile(source: str, target: str) -> None:
    """A swap <-> futures intent that a journal kept from before such transfers were refused
    never appears in the spot ledger, so it is never judged absent and resent."""
    legacy = attrs.evolve(spec("spot", "futures"), from_account=source, to_account=target)
    assert not htx().can_reconcile(legacy)


@pytest.mark.parametrize(
    ("source", "target"), [("coin_futures", "futures"), ("futures", "coin_futures")]
)
def test_coin_futures_and_futures_are_refused_before_anything_is_recorded(
    source: str, target: str
) -> None:
    """No HTX page documents swap <-> futures and a lost answer could never be settled, so the
    pair is refused at validation, before the journal or the network is touched."""
    with pytest.raises(InvalidRequestError, match="does not transfer"):
        spec(source, target)


def test_a_row_without_a_transfer_type_is_undecidable() -> None:
    """A row that fits but has no transferType can be neither counted nor ruled out."""
    assert htx().ledger_matches(row("-10.50", None), spec("spot", "usdt_futures")) is None


@pytest.mark.parametrize(
    "spelling", ["spot-to-linear-swap-v2", "dm-spot-to-swap-new", "SPOT-TO-LINEAR-SWAP", "x"]
)
def test_a_transfer_type_xferkit_does_not_know_is_undecidable(spelling: str) -> None:
    """HTX's list of spellings is open: one xferkit does not know may be this very transfer,
    so it is "cannot tell" (UNKNOWN), never "not this transfer" (which would resend it)."""
    assert htx().ledger_matches(row("-10.50", spelling), spec("spot", "usdt_futures")) is None


@pytest.mark.parametrize(
    "spelling",
    ["margin-transfer-out", "spot-to-super-margin", "sub-transfer-out", "lock-abc", "agency-x"],
)
def test_a_documented_other_movement_is_not_this_transfer(spelling: str) -> None:
    assert htx().ledger_matches(row("-10.50", spelling), spec("spot", "usdt_futures")) is False
