"""FakeHTX's spot ledger: rows, paging with nextId, the query window, and xferkit's reading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from xferkit.testing import FakeHTX, FakeTransport, VirtualClock
from xferkit.testing._htx import FIRST_TRANSACT_ID, FIRST_TRANSFER_ID
from xferkit.venues.htx import HTX

from .htx_caller import KEY, SECRET, HTXCaller, to_http_response

DAY_MS = 24 * 3600 * 1000
SPOT = 10_000_001


@pytest.fixture
def fake_htx(clock: VirtualClock) -> FakeHTX:
    """A fake HTX with default balances, no faults."""
    return FakeHTX(access_key=KEY, secret=SECRET, clock=clock)


@pytest.fixture
async def htx_caller(fake_htx: FakeHTX, clock: VirtualClock) -> AsyncIterator[HTXCaller]:
    """Signs and sends requests to the fake as xferkit's HTX module would."""
    async with httpx.AsyncClient(transport=FakeTransport(fake_htx)) as http:
        yield HTXCaller(http, HTX(KEY, SECRET), clock)


async def make_transfers(caller: HTXCaller, clock: VirtualClock, count: int) -> None:
    """``count`` transfers out of spot of 1, 2, 3... usdt, one virtual second apart."""
    for i in range(1, count + 1):
        response = await caller.transfer(caller.body(amount=Decimal(i)))
        assert response.json()["success"]
        clock.advance(1)


def window(fake: FakeHTX, **query: str | int) -> dict[str, str | int]:
    """The last hour of the spot account's usdt transfers, plus ``query``."""
    now = fake.server_time_ms()
    return {
        "accountId": SPOT,
        "currency": "usdt",
        "transactTypes": "transfer",
        "startTime": now - 3600_000,
        "endTime": now,
        **query,
    }


def refusal(page: dict[str, Any]) -> int:
    """The code of a refused ledger query, after checking its shape."""
    assert list(page) == ["code", "message", "ok"]
    assert page["ok"] is False
    code: int = page["code"]
    return code


async def test_rows_as_served(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """Each row carries the documented fields, newest first; amounts are signed JSON numbers;
    the envelope has no nextId when the page is not full."""
    start = fake_htx.server_time_ms()
    await htx_caller.transfer(htx_caller.body(amount=Decimal("12.5")))
    clock.advance(2)
    await htx_caller.transfer(htx_caller.body(source="otc", target="spot", amount=Decimal("0.1")))
    response = await htx_caller.send(htx_caller.ledger_request(window(fake_htx)))
    assert b'"transactAmt":-12.5,' in response.content
    assert b'"transactAmt":0.1,' in response.content
    page = response.json()
    assert list(page) == ["code", "message", "data", "ok"]
    assert (page["code"], page["message"], page["ok"]) == (200, "success", True)
    assert page["data"] == [
        {
            "accountId": SPOT,
            "currency": "usdt",
            "transactAmt": 0.1,
            "transactType": "transfer",
            "transferType": "otc-to-spot",
            "transactId": FIRST_TRANSACT_ID + 1,
            "transactTime": start + 2000,
            "transferer": fake_htx.account_id("otc"),
            "transferee": SPOT,
        },
        {
            "accountId": SPOT,
            "currency": "usdt",
            "transactAmt": -12.5,
            "transactType": "transfer",
            "transferType": "spot-to-linear-swap",
            "transactId": FIRST_TRANSACT_ID,
            "transactTime": start,
            "transferer": SPOT,
            "transferee": fake_htx.account_id("linear-swap"),
        },
    ]
    assert {row["transactId"] for row in page["data"]}.isdisjoint(
        {FIRST_TRANSFER_ID, FIRST_TRANSFER_ID + 1}
    )


async def test_seven_rows_in_pages_of_three(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """Seven rows with limit 3 come newest first in pages of 3, 3 and 1; nextId (the first id
    of the next page, passed back as fromId) is only on the two full pages."""
    await make_transfers(htx_caller, clock, 7)
    pages = []
    from_id: int | None = None
    while True:
        extra = {"limit": 3} if from_id is None else {"limit": 3, "fromId": from_id}
        page = await htx_caller.ledger(**window(fake_htx, **extra))
        pages.append(page)
        if "nextId" not in page:
            break
        from_id = page["nextId"]
    amounts = [[row["transactAmt"] for row in page["data"]] for page in pages]
    assert amounts == [[-7, -6, -5], [-4, -3, -2], [-1]]
    assert [page.get("nextId") for page in pages] == [
        FIRST_TRANSACT_ID + 3,
        FIRST_TRANSACT_ID,
        None,
    ]
    assert list(pages[0]) == ["code", "message", "data", "nextId", "ok"]


async def test_full_last_page_has_no_next_id(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """A page that is full but has nothing after it carries no nextId."""
    await make_transfers(htx_caller, clock, 6)
    first = await htx_caller.ledger(**window(fake_htx, limit=3))
    second = await htx_caller.ledger(**window(fake_htx, limit=3, fromId=first["nextId"]))
    assert len(second["data"]) == 3
    assert "nextId" not in second


async def test_default_limit_is_100(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """Without a limit a page holds 100 rows."""
    for _ in range(101):
        await htx_caller.transfer(htx_caller.body(amount=Decimal(1)))
    page = await htx_caller.ledger(**window(fake_htx))
    assert len(page["data"]) == 100
    assert page["data"][0]["transactId"] == FIRST_TRANSACT_ID + 100
    assert page["nextId"] == FIRST_TRANSACT_ID


async def test_filters_by_time_currency_and_type(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """Only rows inside [startTime, endTime] of the asked currency and type come back."""
    first_ms = fake_htx.server_time_ms()
    await htx_caller.transfer(htx_caller.body())
    clock.advance(10)
    await htx_caller.transfer(htx_caller.body(currency="btc", amount=Decimal("0.5")))
    second_ms = fake_htx.server_time_ms()
    assert len(fake_htx.audit) == 2
    assert len(fake_htx.ledger_rows()) == 2
    usdt = await htx_caller.ledger(**window(fake_htx))
    assert [row["transactTime"] for row in usdt["data"]] == [first_ms]
    btc = await htx_caller.ledger(**window(fake_htx, currency="BTC"))
    assert [row["transactAmt"] for row in btc["data"]] == [-0.5]
    later = await htx_caller.ledger(**window(fake_htx, startTime=first_ms + 1))
    assert later["data"] == []
    exact = await htx_caller.ledger(**window(fake_htx, startTime=first_ms, endTime=first_ms))
    assert len(exact["data"]) == 1
    deposits = await htx_caller.ledger(**window(fake_htx, transactTypes="deposit"))
    assert deposits["data"] == []
    everything = await htx_caller.ledger(accountId=SPOT)  # the last 10 days, all currencies
    assert [row["transactTime"] for row in everything["data"]] == [second_ms, first_ms]


async def test_window_longer_than_ten_days_is_refused(
    htx_caller: HTXCaller, fake_htx: FakeHTX
) -> None:
    """endTime - startTime may be 10 days but not a millisecond more (code 2002)."""
    now = fake_htx.server_time_ms()
    ok = await htx_caller.ledger(**window(fake_htx, startTime=now - 10 * DAY_MS, endTime=now))
    assert ok["ok"] is True
    too_long = await htx_caller.ledger(
        **window(fake_htx, startTime=now - 10 * DAY_MS - 1, endTime=now)
    )
    assert refusal(too_long) == 2002
    assert "10 days" in too_long["message"]


async def test_start_older_than_180_days_is_refused(
    htx_caller: HTXCaller, fake_htx: FakeHTX
) -> None:
    """startTime may reach back 180 days but no further (code 2002)."""
    now = fake_htx.server_time_ms()
    oldest = now - 180 * DAY_MS
    ok = await htx_caller.ledger(**window(fake_htx, startTime=oldest, endTime=oldest + DAY_MS))
    assert ok["ok"] is True
    too_old = await htx_caller.ledger(
        **window(fake_htx, startTime=oldest - 1, endTime=oldest + DAY_MS)
    )
    assert refusal(too_old) == 2002
    assert "180 days" in too_old["message"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"accountId": 999}, 1002),
        ({"limit": 0}, 2002),
        ({"limit": 501}, 2002),
        ({"limit": "ten"}, 2002),
        ({"fromId": "x"}, 2002),
        ({"startTime": 2, "endTime": 1}, 2002),
    ],
)
async def test_bad_queries_are_refused(
    htx_caller: HTXCaller, fake_htx: FakeHTX, query: dict[str, str | int], code: int
) -> None:
    """An account id not the caller's (1002), an out-of-range limit or a non-number (2002)."""
    assert refusal(await htx_caller.ledger(**window(fake_htx, **query))) == code


async def test_all_parameters_are_optional(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """A query with no parameters reads the caller's spot account over the last 10 days."""
    await make_transfers(htx_caller, clock, 2)
    page = await htx_caller.ledger()
    assert [row["transactAmt"] for row in page["data"]] == [-2, -1]


async def test_from_id_must_name_a_row(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """A fromId that names no row is 2002 "value in fromId is not found", never a filter."""
    await make_transfers(htx_caller, clock, 3)
    named = await htx_caller.ledger(**window(fake_htx, fromId=FIRST_TRANSACT_ID + 1))
    assert [row["transactAmt"] for row in named["data"]] == [-2, -1]
    missing = await htx_caller.ledger(**window(fake_htx, fromId=FIRST_TRANSACT_ID + 99))
    assert refusal(missing) == 2002
    assert missing["message"] == "value in fromId is not found"


async def test_start_in_the_future_is_refused(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """A startTime later than the venue's now is 2002."""
    now = fake_htx.server_time_ms()
    page = await htx_caller.ledger(**window(fake_htx, startTime=now + 1000, endTime=now + 2000))
    assert refusal(page) == 2002


async def test_limit_500_is_the_maximum(htx_caller: HTXCaller, fake_htx: FakeHTX) -> None:
    """The largest page, 500 (what xferkit asks for), is accepted."""
    assert (await htx_caller.ledger(**window(fake_htx, limit=500)))["ok"] is True


async def test_ledger_needs_a_valid_signature(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """A ledger query signed with the wrong secret, or stale, gets the gateway's old shape."""
    wrong = HTXCaller(htx_caller.http, HTX(KEY, "bad"), clock)
    response = await wrong.send(wrong.ledger_request(window(fake_htx)))
    assert response.json()["err-code"] == "api-signature-not-valid"
    stale = htx_caller.ledger_request(timestamp_ms=htx_caller.now_ms() - 600_000)
    stale_answer = (await htx_caller.send(stale)).json()
    assert "Invalid submission time" in stale_answer["err-msg"]


async def test_xferkit_reads_and_matches_the_ledger(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """xferkit's own ledger request (limit 500) is accepted, its parser reads the rows exactly,
    and its matching rules recognise each transfer's row and no other."""
    htx = htx_caller.htx
    start = fake_htx.server_time_ms()
    await htx_caller.transfer(htx_caller.body(amount=Decimal("0.12345678")))
    await htx_caller.transfer(htx_caller.body(source="swap", target="spot", amount=Decimal(3)))
    clock.advance(1)
    request = htx.ledger_request(
        account_id=htx.parse_spot_account_id(to_http_response(await htx_caller.accounts())),
        currency="usdt",
        start_ms=start,
        end_ms=fake_htx.server_time_ms(),
        from_id=None,
        timestamp_ms=htx_caller.now_ms(),
    )
    page = htx.parse_ledger(to_http_response(await htx_caller.send(request)))
    assert page.next_id is None
    in_row, out_row = page.rows  # newest first
    assert out_row.amount == Decimal("-0.12345678")
    assert in_row.amount == Decimal(3)
    out_spec = htx.validate(
        currency="usdt", amount="0.12345678", from_account="spot", to_account="usdt_futures"
    )
    in_spec = htx.validate(
        currency="usdt", amount="3", from_account="coin_futures", to_account="spot"
    )
    assert htx.ledger_matches(out_row, out_spec)
    assert htx.ledger_matches(in_row, in_spec)
    assert not htx.ledger_matches(out_row, in_spec)
    assert not htx.ledger_matches(in_row, out_spec)


async def test_rows_use_the_venues_clock(
    htx_caller: HTXCaller, fake_htx: FakeHTX, clock: VirtualClock
) -> None:
    """transactTime is the venue's clock, skew included, not the caller's."""
    fake_htx.skew_ms = 4000
    server_ms = await htx_caller.server_time()
    await htx_caller.transfer(timestamp_ms=server_ms)
    [row] = fake_htx.ledger_rows()
    assert row.transact_time == int(clock.time() * 1000) + 4000
