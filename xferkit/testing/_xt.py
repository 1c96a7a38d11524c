"""A fake XT.com spot API v4 that checks requests the way shared/venues/xt.md says XT does.

It serves ``GET /v4/public/time``, ``POST /v4/balance/transfer`` and ``GET /v4/balance``,
verifies the ``validate-*`` headers and the HMAC over the exact bytes received, keeps balances
per native account, de-duplicates on ``bizId`` and records every transfer it really executed in
`FakeXT.audit`, which is what exactly-once tests assert against.
"""

from __future__ import annotations

import collections
import decimal
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import parse_qsl

from .._clock import SYSTEM_CLOCK, Clock
from .._validation import MAX_AMOUNT_CHARS
from ..venues.xt import ACCOUNTS, TIME_PATH, TRANSFER_PATH, sign
from ._faults import Fault, FaultPlan, after_processing, before_processing
from ._sim import Execution, ReceivedRequest, Refuse, SimAction, SimRequest, SimResponse

__all__ = ["BALANCE_PATH", "DEFAULT_XT_HOST", "FIRST_TRANSFER_ID", "FakeXT"]

DEFAULT_XT_HOST = "sapi.xt.com"
BALANCE_PATH = "/v4/balance"
FIRST_TRANSFER_ID = 226_972_662_307_830_528
"""The id of the first transfer; later ones count up. Above 2**53, like XT's real ids, so a
client that parses ids as floats loses digits and a test notices."""

NATIVE_ACCOUNTS: tuple[str, ...] = tuple(ACCOUNTS.values())
MAX_BIZ_ID_CHARS = 128
MAX_AHEAD_MS = 1000
MIN_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS = 2000, 60000
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_SYMBOL = re.compile(r"([a-z0-9]+)_([a-z0-9]+)")
# Exact money: an operation that would round raises instead of losing a digit.
_MONEY = decimal.Context(prec=1000, traps=[decimal.Inexact, decimal.InvalidOperation])


def _default_balances() -> dict[str, dict[str, Decimal]]:
    return {
        account: {"usdt": Decimal("1000000"), "btc": Decimal("100")} for account in NATIVE_ACCOUNTS
    }


class _Refused(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """A request XT answers with ``rc=1`` and ``code``; nothing moved."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class FakeXT:
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
    """

    name = "xt"

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
    ) -> None:
        self.api_key = api_key
        self._secret = secret
        self.host = host
        self.faults = faults
        self.failed_attempts_spend_bizid = failed_attempts_spend_bizid
        self.balance_checked_first = balance_checked_first
        self._refusals: list[tuple[str, str]] = []
        self.skew_ms = 0
        """Milliseconds the venue's clock runs ahead of ``clock`` (negative: behind)."""
        self._clock = clock
        self._balances = _initial_balances(balances)
        self._currencies = frozenset(c for funds in self._balances.values() for c in funds)
        self._spent_biz_ids: set[str] = set()
        self._audit: list[Execution] = []
        self._requests: list[ReceivedRequest] = []
        self._next_id = FIRST_TRANSFER_ID
        # handle() never awaits, so tasks cannot interleave inside it; the lock is for a
        # loopback server run from another thread.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeXT(api_key={self.api_key!r}, host={self.host!r})"

    # -- what tests look at ------------------------------------------------------------------

    @property
    def audit(self) -> Sequence[Execution]:
        """Every transfer that really executed, in order."""
        return tuple(self._audit)

    @property
    def requests(self) -> Sequence[ReceivedRequest]:
        """Every request that reached the venue, in order (refused connections excluded)."""
        return tuple(self._requests)

    def executions_by_token(self) -> collections.Counter[str]:
        """How many times each bizId executed: exactly-once means every count is 1."""
        return collections.Counter(e.biz_id for e in self._audit if e.biz_id is not None)

    def balance(self, account: str, currency: str) -> Decimal:
        """The balance of ``currency`` in ``account`` (native ``SPOT`` or unified ``spot``)."""
        native = ACCOUNTS.get(account, account.upper())
        if native not in self._balances:
            raise ValueError(f"{account!r} is not an XT account")
        return self._balances[native].get(currency.lower(), Decimal(0))

    def refuse_next(self, code: str, message: str = "refused", *, times: int = 1) -> None:
        """Answer the next ``times`` transfer requests ``code`` before any processing, as XT's
        gateway does for risk control (``GATEWAY_0001``) or a changed IP (``AUTH_104``).
        A request struck by a fault is not one of them: the fault decides its fate."""
        with self._lock:
            self._refusals.extend([(code, message)] * times)

    def server_time_ms(self) -> int:
        """The venue's clock in Unix milliseconds, skew included."""
        return int(self._clock.time() * 1000) + self.skew_ms

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
            if request.path in {TIME_PATH, TRANSFER_PATH, BALANCE_PATH}:
                return SimResponse.text(405, "Method Not Allowed")
            return SimResponse.text(404, "Not Found")

    def _record(self, request: SimRequest, fault: Fault | None) -> None:
        received = ReceivedRequest(
            request=request, clock_time=self._clock.time(), real_time=time.time(), fault=fault
        )
        self._requests.append(received)

    def _transfer_endpoint(self, request: SimRequest) -> SimAction:
        plan = self.faults
        fault = plan.next_fault() if plan is not None else None
        early = before_processing(fault)
        if isinstance(early, Refuse):
            return early
        self._record(request, fault)
        if early is not None:
            return early
        if self._refusals and fault is None:
            return _error(*self._refusals.pop(0))
        if plan is not None and fault is Fault.CLOCK_SKEW:
            self.skew_ms += plan.skew_ms
            return _error("AUTH_105", "request expired: timestamp outside the receive window")
        answer = _answer(self._transfer, request)
        if fault is Fault.TIMEOUT_CODE_AFTER:
            return _error("TRANSFER_007", "request timed out; the transfer may have executed")
        return answer if plan is None else after_processing(plan, fault, answer)

    def _transfer(self, request: SimRequest) -> SimResponse:
        self._authenticate(request)
        fields = _json_object(request.body)
        biz_id = fields.get("bizId")
        if not isinstance(biz_id, str) or not biz_id:
            raise _Refused("FUND_017", "bizId is required")
        if len(biz_id) > MAX_BIZ_ID_CHARS:
            raise _Refused("FUND_017", f"bizId has more than {MAX_BIZ_ID_CHARS} characters")
        if self.balance_checked_first:
            self._check_balance(fields)
        if biz_id in self._spent_biz_ids:
            raise _Refused("TRANSFER_001", "duplicate request: this bizId was already used")
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
            raise _Refused("FUND_015", "from and to must be different accounts")
        currency = fields.get("currency")
        if not isinstance(currency, str) or currency not in self._currencies:
            raise _Refused("CURRENCY_001", f"currency {currency!r} does not exist")
        symbol = (
            self._symbol(fields.get("symbol"), currency) if "LEVER" in (source, target) else None
        )
        amount = _amount(fields.get("amount"))
        available = self._balances[source].get(currency, Decimal(0))
        if amount > available:
            raise _Refused("FUND_002", "insufficient balance")
        # Compute both sides before writing either: the move is all or nothing.
        debited = _MONEY.subtract(available, amount)
        credited = _MONEY.add(self._balances[target].get(currency, Decimal(0)), amount)
        self._balances[source][currency] = debited
        self._balances[target][currency] = credited
        execution = Execution(
            venue=self.name,
            biz_id=biz_id,
            from_account=source,
            to_account=target,
            currency=currency,
            amount=amount,
            transfer_id=str(self._next_id),
            executed_at=datetime.fromtimestamp(self._clock.time(), tz=timezone.utc),
            symbol=symbol,
        )
        self._next_id += 1
        self._spent_biz_ids.add(biz_id)
        self._audit.append(execution)
        return execution

    def _check_balance(self, fields: Mapping[str, object]) -> None:
        source, currency = _account(fields, "from"), fields.get("currency")
        if not isinstance(currency, str) or currency not in self._currencies:
            return
        if _amount(fields.get("amount")) > self._balances[source].get(currency, Decimal(0)):
            raise _Refused("FUND_002", "insufficient balance")

    def _symbol(self, value: object, currency: str) -> str:
        if not isinstance(value, str) or not value:
            raise _Refused("FUND_016", "a LEVER transfer needs symbol")
        match = _SYMBOL.fullmatch(value)
        pair = match.groups() if match else ()
        if not pair or not set(pair) <= self._currencies or currency not in pair:
            raise _Refused("SYMBOL_001", f"symbol {value!r} does not exist for {currency}")
        return value

    def _balance_query(self, request: SimRequest) -> SimResponse:
        self._authenticate(request)
        currency = dict(parse_qsl(request.query)).get("currency", "")
        if currency not in self._currencies:
            raise _Refused("CURRENCY_001", f"currency {currency!r} does not exist")
        amount = format(self._balances["SPOT"].get(currency, Decimal(0)), "f")
        return _ok(
            {
                "currency": currency,
                "availableAmount": amount,
                "frozenAmount": "0",
                "totalAmount": amount,
            }
        )

    def _authenticate(self, request: SimRequest) -> None:
        """Check the ``validate-*`` headers, the clock window and the signature, in that order."""
        key = _header(request, "validate-appkey", "AUTH_001")
        timestamp_text = _header(request, "validate-timestamp", "AUTH_002")
        window_text = _header(request, "validate-recvwindow", "AUTH_003")
        algorithm = _header(request, "validate-algorithms", "AUTH_005")
        signature = _header(request, "validate-signature", "AUTH_007")
        window = _integer(window_text)
        if window is None or not MIN_RECV_WINDOW_MS <= window <= MAX_RECV_WINDOW_MS:
            raise _Refused("AUTH_004", "validate-recvwindow must be 2000..60000")
        if algorithm != "HmacSHA256":
            raise _Refused("AUTH_006", "validate-algorithms must be HmacSHA256")
        timestamp = _integer(timestamp_text)
        if timestamp is None:
            raise _Refused("AUTH_002", "validate-timestamp must be Unix milliseconds")
        if key != self.api_key:
            raise _Refused("AUTH_101", "api key does not exist")
        server_ms = self.server_time_ms()
        if server_ms - timestamp >= window or timestamp - server_ms > MAX_AHEAD_MS:
            raise _Refused("AUTH_105", "request expired: timestamp outside the receive window")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("AUTH_103", "signature error") from None
        expected = sign(
            api_key=key,
            secret=self._secret,
            method=request.method,
            path=request.path,
            timestamp_ms=timestamp,
            recv_window_ms=window,
            query=dict(parse_qsl(request.query, keep_blank_values=True)),
            body=body or None,
        )
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise _Refused("AUTH_103", "signature error")


def _initial_balances(
    balances: Mapping[str, Mapping[str, Decimal]] | None,
) -> dict[str, dict[str, Decimal]]:
    if balances is None:
        return _default_balances()
    result: dict[str, dict[str, Decimal]] = {account: {} for account in NATIVE_ACCOUNTS}
    for account, funds in balances.items():
        if account not in result:
            raise ValueError(f"{account!r} is not an XT account; use one of {NATIVE_ACCOUNTS}")
        for currency, amount in funds.items():
            if currency != currency.lower() or not isinstance(amount, Decimal) or amount < 0:
                raise ValueError(
                    "balances need lowercase currencies and non-negative Decimal amounts, "
                    f"not {currency!r}: {amount!r}"
                )
            result[account][currency] = amount
    return result


def _answer(handler: Callable[[SimRequest], SimResponse], request: SimRequest) -> SimResponse:
    try:
        return handler(request)
    except _Refused as refused:
        return _error(refused.code, refused.message)


def _ok(result: object) -> SimResponse:
    return SimResponse.json({"rc": 0, "mc": "SUCCESS", "ma": [], "result": result})


def _error(code: str, message: str) -> SimResponse:
    # XT answers business and auth refusals with HTTP 200 and rc=1.
    return SimResponse.json({"rc": 1, "mc": code, "ma": [message], "result": None})


def _header(request: SimRequest, name: str, code: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise _Refused(code, f"missing request header {name}")
    return value


def _integer(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        fields = json.loads(body)
    except ValueError:
        raise _Refused("FUND_017", "the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise _Refused("FUND_017", "the body must be a JSON object")
    return fields


def _account(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or value not in NATIVE_ACCOUNTS:
        raise _Refused("FUND_017", f"{name} must be one of {', '.join(NATIVE_ACCOUNTS)}")
    return value


def _amount(value: object) -> Decimal:
    if not isinstance(value, str) or not value:
        raise _Refused("FUND_017", "amount must be a decimal string")
    if len(value) > MAX_AMOUNT_CHARS:
        raise _Refused("FUND_044", f"amount has more than {MAX_AMOUNT_CHARS} characters")
    if not _PLAIN_DECIMAL.fullmatch(value) or not Decimal(value) > 0:
        raise _Refused("FUND_017", "amount must be a plain positive decimal")
    return Decimal(value)
