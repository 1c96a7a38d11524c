"""ccxt's async ``xt`` and ``htx`` classes, unpatched, against the simulated venues on loopback.

The simulation claims to answer as XT and HTX do; a client xferkit did not write is the check.
ccxt is pointed at the loopback server through its public options only (``urls``,
``hostname``, ``options['timeDifference']``, ``set_markets``), never by patching its code.

Run with ``pip install -e '.[interop]' && pytest tests_interop``. Without ccxt the module is
skipped, except under ``CI=true``, where a missing ccxt is a failure (CI must run it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from anyio.from_thread import start_blocking_portal

from xferkit.testing import FakeHTX, FakeXT, LoopbackServer, serve

try:
    import ccxt.async_support as ccxt_async
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise
    pytest.skip(
        "ccxt is not installed: pip install -e '.[interop]' to run the interoperability tests",
        allow_module_level=True,
    )

XT_KEY, XT_SECRET = "interop-xt-key", "interop-xt-secret"
HTX_KEY, HTX_SECRET = "interop-htx-key", "interop-htx-secret"
CURRENCIES = {
    code: {"id": code.lower(), "code": code, "precision": 1e-8, "active": True}
    for code in ("USDT", "BTC")
}


def market(market_id: str) -> dict[str, Any]:
    """One spot market in ccxt's structure, so ccxt needs no market download."""
    return {
        "id": market_id,
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "baseId": "btc",
        "quoteId": "usdt",
        "type": "spot",
        "spot": True,
        "active": True,
        "precision": {"amount": 1e-8, "price": 1e-8},
        "limits": {},
    }


@pytest.fixture
def served() -> Iterator[tuple[FakeXT, FakeHTX, LoopbackServer]]:
    """The simulated XT and HTX on loopback, run by a portal thread, on the real clock."""
    xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET)
    htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(xt, htx)) as server,
    ):
        yield xt, htx, server


@pytest.fixture
async def xt_client(served: tuple[FakeXT, FakeHTX, LoopbackServer]) -> AsyncIterator[Any]:
    """ccxt's async xt with every API URL pointed at the simulated XT."""
    url = served[2].url("xt")
    exchange = ccxt_async.xt({"apiKey": XT_KEY, "secret": XT_SECRET})
    exchange.urls["api"] = dict.fromkeys(exchange.urls["api"], url)
    exchange.set_markets([market("btc_usdt")], CURRENCIES)
    try:
        yield exchange
    finally:
        await exchange.close()


@pytest.fixture
async def htx_client(served: tuple[FakeXT, FakeHTX, LoopbackServer]) -> AsyncIterator[Any]:
    """ccxt's async htx signing for, and calling, the simulated HTX's 127.0.0.1:PORT."""
    host = urlsplit(served[2].url("htx")).netloc
    exchange = ccxt_async.htx({"apiKey": HTX_KEY, "secret": HTX_SECRET, "hostname": host})
    exchange.urls["hostnames"] = {"spot": host, "contract": host, "status": host}
    exchange.urls["api"] = dict.fromkeys(exchange.urls["api"], "http://{hostname}")
    exchange.set_markets([market("btcusdt")], CURRENCIES)
    try:
        yield exchange
    finally:
        await exchange.close()


XT_PAIRS = [
    ("spot", "swap", "SPOT", "FUTURES_U", {}),
    ("swap", "spot", "FUTURES_U", "SPOT", {}),
    ("spot", "inverse", "SPOT", "FUTURES_C", {}),
    ("inverse", "spot", "FUTURES_C", "SPOT", {}),
    ("spot", "finance", "SPOT", "FINANCE", {}),
    ("finance", "spot", "FINANCE", "SPOT", {}),
    ("spot", "leverage", "SPOT", "LEVER", {"symbol": "btc_usdt"}),
    ("leverage", "spot", "LEVER", "SPOT", {"symbol": "btc_usdt"}),
    ("swap", "inverse", "FUTURES_U", "FUTURES_C", {}),
]


@pytest.mark.parametrize(("source", "target", "native_from", "native_to", "params"), XT_PAIRS)
async def test_xt_transfer_on_every_pair(
    served: tuple[FakeXT, FakeHTX, LoopbackServer],
    xt_client: Any,
    source: str,
    target: str,
    native_from: str,
    native_to: str,
    params: dict[str, str],
) -> None:
    """ccxt's xt.transfer (xt-validate-* headers) moves money on each XT account pair."""
    fake = served[0]
    result = await xt_client.transfer("USDT", 12.5, source, target, params)
    [execution] = fake.audit
    assert result["id"] == execution.transfer_id
    assert (execution.from_account, execution.to_account) == (native_from, native_to)
    assert execution.amount == Decimal("12.5")
    assert "xt-validate-signature" in fake.requests[-1].request.headers


async def test_xt_balance(xt_client: Any) -> None:
    """ccxt's xt.fetch_balance reads the spot balances from GET /v4/balances."""
    balance = await xt_client.fetch_balance()
    assert balance["USDT"]["free"] == 1_000_000
    assert balance["BTC"]["total"] == 100


async def test_xt_corrupted_secret_is_auth_103(xt_client: Any) -> None:
    """A corrupted secret gets XT's AUTH_103, which ccxt raises as an error."""
    xt_client.secret = XT_SECRET + "x"
    with pytest.raises(ccxt_async.BaseError, match="AUTH_103"):
        await xt_client.transfer("USDT", 1, "spot", "swap")


async def test_xt_clock_20s_behind_is_auth_105(xt_client: Any) -> None:
    """A client clock 20 s behind gets XT's AUTH_105."""
    xt_client.options["timeDifference"] = 20_000
    with pytest.raises(ccxt_async.BaseError, match="AUTH_105"):
        await xt_client.transfer("USDT", 1, "spot", "swap")


HTX_PAIRS = [
    ("spot", "swap", {"subType": "linear"}, "spot", "linear-swap"),
    ("swap", "spot", {"subType": "linear"}, "linear-swap", "spot"),
    ("spot", "swap", {"subType": "inverse"}, "spot", "swap"),
    ("swap", "spot", {"subType": "inverse"}, "swap", "spot"),
    ("spot", "future", {}, "spot", "futures"),
    ("future", "spot", {}, "futures", "spot"),
    ("spot", "otc", {"subType": "inverse"}, "spot", "otc"),
    ("otc", "spot", {"subType": "inverse"}, "otc", "spot"),
]


@pytest.mark.parametrize(("source", "target", "params", "native_from", "native_to"), HTX_PAIRS)
async def test_htx_transfer_on_every_pair(
    served: tuple[FakeXT, FakeHTX, LoopbackServer],
    htx_client: Any,
    source: str,
    target: str,
    params: dict[str, str],
    native_from: str,
    native_to: str,
) -> None:
    """ccxt's htx.transfer (a JSON-number amount, margin-account USDT for linear-swap) moves
    money on each documented pair and writes the spot ledger's row."""
    fake = served[1]
    result = await htx_client.transfer("USDT", 12.5, source, target, params)
    [execution] = fake.audit
    assert str(result["id"]) == execution.transfer_id
    assert (execution.from_account, execution.to_account) == (native_from, native_to)
    assert execution.amount == Decimal("12.5")
    [row] = fake.ledger_rows()
    assert row.transact_amt == (Decimal("12.5") if native_to == "spot" else Decimal("-12.5"))


async def test_htx_accounts_balance_and_ledger(
    served: tuple[FakeXT, FakeHTX, LoopbackServer], htx_client: Any
) -> None:
    """ccxt reads the accounts list, the spot balance and the ledger's transfer rows."""
    fake = served[1]
    accounts = await htx_client.fetch_accounts()
    assert {a["type"] for a in accounts} == {"spot", "otc"}
    assert {a["id"] for a in accounts} >= {str(fake.spot_account_id)}
    balance = await htx_client.fetch_balance()
    assert balance["USDT"]["free"] == 1_000_000
    await htx_client.transfer("USDT", 1, "spot", "swap", {"subType": "linear"})
    await htx_client.transfer("USDT", 2, "spot", "otc", {"subType": "inverse"})
    ledger = await htx_client.fetch_ledger("USDT")
    assert sorted(entry["amount"] for entry in ledger) == [-2, -1]
    assert {entry["info"]["transferType"] for entry in ledger} == {
        "spot-to-linear-swap",
        "spot-to-otc",
    }


async def test_htx_corrupted_secret_is_refused(htx_client: Any) -> None:
    """A corrupted secret gets HTX's api-signature-not-valid."""
    htx_client.secret = HTX_SECRET + "x"
    with pytest.raises(ccxt_async.BaseError, match="api-signature-not-valid"):
        await htx_client.fetch_accounts()


@pytest.mark.parametrize("offset_ms", [400_000, -400_000])
async def test_htx_clock_400s_off_gets_the_time_message(htx_client: Any, offset_ms: int) -> None:
    """A client clock 400 s behind or ahead gets HTX's clock message."""
    htx_client.options["timeDifference"] = offset_ms
    with pytest.raises(ccxt_async.BaseError, match="Invalid submission time"):
        await htx_client.transfer("USDT", 1, "spot", "swap", {"subType": "linear"})
