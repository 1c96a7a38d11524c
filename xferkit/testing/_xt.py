"""A fake XT.com spot API v4 that checks requests the way shared/venues/xt.md says XT does.

It serves ``GET /v4/public/time``, ``POST /v4/balance/transfer``, ``GET /v4/balance`` and
``GET /v4/balances``, verifies the signing headers (``validate-*`` or the older ``xt-validate-*``
spelling ccxt sends, with any HmacSHA algorithm XT documents) and the HMAC over the exact bytes
received, keeps balances per native account, de-duplicates on ``bizId`` and records every
transfer it really executed in `FakeXT.audit`, which is what exactly-once tests assert against.

Refusals carry ``ma`` as XT does: message arguments (a field name, usually nothing), never an
English sentence.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from .._clock import SYSTEM_CLOCK, Clock
from .._validation import MAX_AMOUNT_CHARS
from ..venues.xt import ACCOUNTS, TIME_PATH, TRANSFER_PATH
from ._faults import Fault, FaultPlan
from ._sim import Execution, SimAction, SimRequest, SimResponse
from ._venue import SimulatedVenue, plain_decimal

__all__ = [
    "ALGORITHMS",
    "BALANCES_PATH",
    "BALANCE_PATH",
    "DEFAULT_XT_HOST",
    "DUPLICATE_CODES",
    "FIRST_TRANSFER_ID",
    "HEADER_PREFIXES",
    "FakeXT",
    "xt_signature",
]

DEFAULT_XT_HOST = "sapi.xt.com"
BALANCE_PATH = "/v4/balance"
BALANCES_PATH = "/v4/balances"
FIRST_TRANSFER_ID = 226_972_662_307_830_528
"""The id of the first transfer; later ones count up. Above 2**53, like XT's real ids, so a
client that parses ids as floats loses digits and a test notices."""

NATIVE_ACCOUNTS: tuple[str, ...] = tuple(ACCOUNTS.values())
MAX_BIZ_ID_CHARS = 128
MAX_AHEAD_MS = 1000
MIN_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS = 2000, 60000
ALGORITHMS: Mapping[str, Callable[..., Any]] = {
    "HmacMD5": hashlib.md5,
    "HmacSHA1": hashlib.sha1,
    "HmacSHA224": hashlib.sha224,
    "HmacSHA256": hashlib.sha256,
    "HmacSHA384": hashlib.sha384,
    "HmacSHA512": hashlib.sha512,
}
"""``validate-algorithms`` values XT documents, with their digests."""
HEADER_PREFIXES = ("validate-", "xt-validate-")
"""The header spellings accepted: today's, and the pre-May-2023 one ccxt still sends."""
DUPLICATE_CODES = ("TRANSFER_001", "FUND_001")
"""The codes XT answers a reused bizId with; `FakeXT` answers the one it is given."""
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_SYMBOL = re.compile(r"([a-z0-9]+)_([a-z0-9]+)")


class _Refused(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """A request XT answers with ``rc=1``, ``code`` and message arguments; nothing moved."""

    def __init__(self, code: str, *args: str) -> None:
        super().__init__(code, *args)
        self.code = code
        self.args_ = list(args)


def xt_signature(
    *,
    secret: str,
    prefix: str,
    algorithm: str,
    api_key: str,
    recv_window: str,
    timestamp: str,
    method: str,
    path: str,
    query: str,
    body: str,
) -> str:
    """The lowercase hex HMAC XT expects, X built with the header spelling that was sent.

    ``query`` is the raw query string; its pairs are sorted by key and joined unencoded.
    """
    text = (
        f"{prefix}algorithms={algorithm}&{prefix}appkey={api_key}"
        f"&{prefix}recvwindow={recv_window}&{prefix}timestamp={timestamp}#{method}#{path}"
    )
    pairs = parse_qsl(query, keep_blank_values=True)
    if pairs:
        text += "#" + "&".join(f"{k}={v}" for k, v in sorted(pairs))
    if body:
        text += "#" + body
    return hmac.new(secret.encode(), text.encode(), ALGORITHMS[algorithm]).hexdigest()


class FakeXT(SimulatedVenue):
    """An in-memory XT venue; serve it with `FakeTransport` or `serve`.

    Args:
        api_key: the only API key the venue knows.
        secret: its secret; requests must be signed with it.
        clock: the venue's clock (pass the test's `VirtualClock`); `skew_ms` is
            added to it.
        balances: native account (``SPOT``, ``LEVER``, ``FINANCE``, ``FUTURES_U``,
            ``FUTURES_C``) to lowercase currency to amount. The currencies named anywhere here
            are the ones the venue lists; by default 1,000,000 usdt and 100 btc everywhere.
        faults: the plan that injects faults into transfer requests; none by default.
        host: the host the transport routes to this venue.
        failed_attempts_spend_bizid: whether a transfer refused for a business reason still
            uses up its bizId (XT does not document it; design for both readings).
        balance_checked_first: whether the balance is checked before the bizId, so that a
            resend of an executed bizId may be answered ``FUND_002`` instead of the duplicate
            code (XT does not document the order; design for both readings).
        duplicate_code: how a reused bizId is answered, ``TRANSFER_001`` (default) or
            ``FUND_001``; XT documents both.
    """

    name = "xt"
    label = "XT"

    def __init__(
        self,
        *,
        api_key: str,
        secret: str,
        clock: Clock = SYSTEM_CLOCK,
        balances: Mapping[str, Mapping[str, Decimal]] | None = None,
        faults: FaultPlan | None = None,
        host: str = DEFAULT_XT_HOST,
        failed_attempts_spend_bizid: bool = False,
        balance_checked_first: bool = False,
        duplicate_code: str = "TRANSFER_001",
    ) -> None:
        if duplicate_code not in DUPLICATE_CODES:
            raise ValueError(
                f"duplicate_code must be one of {DUPLICATE_CODES}, not {duplicate_code!r}"
            )
        super().__init__(
            clock=clock, balances=balances, accounts=NATIVE_ACCOUNTS, faults=faults, host=host
        )
        self.api_key = api_key
        self._secret = secret
        self.failed_attempts_spend_bizid = failed_attempts_spend_bizid
        self.balance_checked_first = balance_checked_first
        self.duplicate_code = duplicate_code
        self._refusals: list[tuple[str, list[str]]] = []
        self._spent_biz_ids: set[str] = set()
        self._next_id = FIRST_TRANSFER_ID

    def __repr__(self) -> str:
        return f"FakeXT(api_key={self.api_key!r}, host={self.host!r})"

    # -- what tests look at ------------------------------------------------------------------

    def executions_by_token(self) -> collections.Counter[str]:
        """How many times each bizId executed: exactly-once means every count is 1."""
        return collections.Counter(e.biz_id for e in self._audit if e.biz_id is not None)

    def balance(self, account: str, currency: str) -> Decimal:
        """The balance of ``currency`` in ``account`` (native ``SPOT`` or unified ``spot``)."""
        native = ACCOUNTS.get(account, account.upper())
        if native not in self._balances:
            raise ValueError(f"{account!r} is not an XT account")
        return self._balances[native].get(currency.lower(), Decimal(0))

    def refuse_next(self, code: str, *args: str, times: int = 1) -> None:
        """Answer the next ``times`` transfer requests ``code`` (with ``args`` as ``ma``) before
        any processing, as XT's gateway does for risk control (``GATEWAY_0001``) or a changed
        IP (``AUTH_104``). A request struck by a fault is not one of them: the fault decides
        its fate."""
        with self._lock:
            self._refusals.extend([(code, list(args))] * times)

    # -- the venue ---------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimAction:
        """Answer one request; faults strike only ``POST /v4/balance/transfer``."""
        with self._lock:
            if request.path == TRANSFER_PATH and request.method == "POST":
                return self._transfer_endpoint(request)
            self._record(request, None)
            if request.path == TIME_PATH and request.method == "GET":
                return _ok({"serverTime": self.server_time_ms()})
            if request.path == BALANCE_PATH and request.method == "GET":
                return _answer(self._balance_query, request)
            if request.path == BALANCES_PATH and request.method == "GET":
                return _answer(self._balances_query, request)
            if request.path in {TIME_PATH, TRANSFER_PATH, BALANCE_PATH, BALANCES_PATH}:
                return SimResponse.text(405, "Method Not Allowed")
            return SimResponse.text(404, "Not Found")

    def _transfer_endpoint(self, request: SimRequest) -> SimAction:
        fault, early = self._strike(request)
        if early is not None:
            return early
        if self._refusals and fault is None:
            code, args = self._refusals.pop(0)
            return _error(code, args)
        if self._skewed(fault):
            return _error("AUTH_105")
        answer = _answer(self._transfer, request)
        if fault is Fault.TIMEOUT_CODE_AFTER:
            return _error("TRANSFER_007")
        return self._after(fault, answer)

    def _transfer(self, request: SimRequest) -> SimResponse:
        self._authenticate(request)
        fields = _json_object(request.body)
        biz_id = fields.get("bizId")
        if not isinstance(biz_id, str) or not biz_id:
            raise _Refused("FUND_017", "bizId")
        if len(biz_id) > MAX_BIZ_ID_CHARS:
            raise _Refused("FUND_017", "bizId")
        if self.balance_checked_first:
            self._check_balance(fields)
        if biz_id in self._spent_biz_ids:
            raise _Refused(self.duplicate_code)
        try:
            execution = self._execute(fields, biz_id)
        except _Refused:
            if self.failed_attempts_spend_bizid:
                self._spent_biz_ids.add(biz_id)
            raise
        return _ok(int(execution.transfer_id))

    def _execute(self, fields: Mapping[str, object], biz_id: str) -> Execution:
        source, target = _account(fields, "from"), _account(fields, "to")
        if source == target:
            raise _Refused("FUND_015")
        currency = fields.get("currency")
        if not isinstance(currency, str) or currency not in self._currencies:
            raise _Refused("CURRENCY_001")
        symbol = (
            self._symbol(fields.get("symbol"), currency) if "LEVER" in (source, target) else None
        )
        amount = _amount(fields.get("amount"))
        available = self._balances[source].get(currency, Decimal(0))
        if amount > available:
            raise _Refused("FUND_002")
        execution = self._move(
            source=source,
            target=target,
            currency=currency,
            amount=amount,
            transfer_id=str(self._next_id),
            biz_id=biz_id,
            symbol=symbol,
        )
        self._next_id += 1
        self._spent_biz_ids.add(biz_id)
        return execution

    def _check_balance(self, fields: Mapping[str, object]) -> None:
        source, currency = _account(fields, "from"), fields.get("currency")
        if not isinstance(currency, str) or currency not in self._currencies:
            return
        if _amount(fields.get("amount")) > self._balances[source].get(currency, Decimal(0)):
            raise _Refused("FUND_002")

    def _symbol(self, value: object, currency: str) -> str:
        if not isinstance(value, str) or not value:
            raise _Refused("FUND_016", "symbol")
        match = _SYMBOL.fullmatch(value)
        pair = match.groups() if match else ()
        if not pair or not set(pair) <= self._currencies or currency not in pair:
            raise _Refused("SYMBOL_001")
        return value

    def _balance_query(self, request: SimRequest) -> SimResponse:
        self._authenticate(request)
        currency = dict(parse_qsl(request.query)).get("currency", "")
        if currency not in self._currencies:
            raise _Refused("CURRENCY_001")
        return _ok(self._asset(currency))

    def _balances_query(self, request: SimRequest) -> SimResponse:
        """``GET /v4/balances``: the spot account's assets, optionally ``currencies=a,b``."""
        self._authenticate(request)
        wanted = dict(parse_qsl(request.query)).get("currencies", "")
        names = [c for c in wanted.split(",") if c] or sorted(self._currencies)
        assets = [self._asset(c) for c in names if c in self._currencies]
        return _ok({"totalUsdtAmount": "0", "totalBtcAmount": "0", "assets": assets})

    def _asset(self, currency: str) -> dict[str, str]:
        amount = format(self._balances["SPOT"].get(currency, Decimal(0)), "f")
        return {
            "currency": currency,
            "availableAmount": amount,
            "frozenAmount": "0",
            "totalAmount": amount,
        }

    def _authenticate(self, request: SimRequest) -> None:
        """Check the signing headers, the clock window and the signature, in that order.

        Either spelling is accepted (``validate-*`` or ``xt-validate-*``); the one of
        ``validate-appkey`` decides, and the string to sign uses it.
        """
        prefix = next(
            (p for p in HEADER_PREFIXES if request.headers.get(f"{p}appkey")), HEADER_PREFIXES[0]
        )
        key = _header(request, f"{prefix}appkey", "AUTH_001")
        timestamp_text = _header(request, f"{prefix}timestamp", "AUTH_002")
        window_text = _header(request, f"{prefix}recvwindow", "AUTH_003")
        algorithm = _header(request, f"{prefix}algorithms", "AUTH_005")
        signature = _header(request, f"{prefix}signature", "AUTH_007")
        window = _integer(window_text)
        if window is None or not MIN_RECV_WINDOW_MS <= window <= MAX_RECV_WINDOW_MS:
            raise _Refused("AUTH_004")
        if algorithm not in ALGORITHMS:
            raise _Refused("AUTH_006")
        timestamp = _integer(timestamp_text)
        if timestamp is None:
            raise _Refused("AUTH_002")
        if key != self.api_key:
            raise _Refused("AUTH_101")
        server_ms = self.server_time_ms()
        if server_ms - timestamp >= window or timestamp - server_ms > MAX_AHEAD_MS:
            raise _Refused("AUTH_105")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("AUTH_103") from None
        expected = xt_signature(
            secret=self._secret,
            prefix=prefix,
            algorithm=algorithm,
            api_key=key,
            recv_window=window_text,
            timestamp=timestamp_text,
            method=request.method,
            path=request.path,
            query=request.query,
            body=body,
        )
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise _Refused("AUTH_103")


def _answer(handler: Callable[[SimRequest], SimResponse], request: SimRequest) -> SimResponse:
    try:
        return handler(request)
    except _Refused as refused:
        return _error(refused.code, refused.args_)


def _ok(result: object) -> SimResponse:
    return SimResponse.json({"rc": 0, "mc": "SUCCESS", "ma": [], "result": result})


def _error(code: str, args: Sequence[str] = ()) -> SimResponse:
    # XT answers business and auth refusals with HTTP 200 and rc=1; ma holds arguments only.
    return SimResponse.json({"rc": 1, "mc": code, "ma": list(args), "result": None})


def _header(request: SimRequest, name: str, code: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise _Refused(code, name)
    return value


def _integer(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        fields = json.loads(body, parse_float=plain_decimal)
    except ValueError:
        raise _Refused("FUND_017") from None
    if not isinstance(fields, dict):
        raise _Refused("FUND_017")
    return fields


def _account(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or value not in NATIVE_ACCOUNTS:
        raise _Refused("FUND_017", name)
    return value


def _amount(value: object) -> Decimal:
    """A plain decimal, as a JSON string (ccxt, xferkit) or a JSON number (XT.Net)."""
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
    elif isinstance(value, str) and value:
        text = value
    else:
        raise _Refused("FUND_017", "amount")
    if len(text) > MAX_AMOUNT_CHARS:
        raise _Refused("FUND_044", "amount")
    if not _PLAIN_DECIMAL.fullmatch(text) or not Decimal(text) > 0:
        raise _Refused("FUND_017", "amount")
    return Decimal(text)
