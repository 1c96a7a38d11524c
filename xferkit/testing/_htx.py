"""A fake HTX (Huobi) API that checks requests the way shared/venues/htx.md says HTX does.

It serves ``GET /v1/common/timestamp``, ``POST /v2/account/transfer``,
``GET /v1/account/accounts`` and ``GET /v2/account/ledger``. It verifies signature v2 over the
host actually called, keeps balances per native account and writes a spot-ledger row for every
transfer that touches spot. It has **no** de-duplication: HTX has no idempotency key, so every
accepted request moves money, a resend included. `FakeHTX.audit` records what really executed.

Choices where htx.md is silent (see each constant): the business codes used for bad parameters,
the ledger's order (oldest first) and error code (2002), and when ``nextId`` is sent (only when
more rows follow the page, which implies a full page).
"""

from __future__ import annotations

import collections
import decimal
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import parse_qsl

import attrs

from .._clock import SYSTEM_CLOCK, Clock
from ..venues.htx import (
    ACCOUNTS,
    ACCOUNTS_PATH,
    LEDGER_PATH,
    TIME_PATH,
    TRANSFER_PATH,
    format_timestamp,
    sign,
)
from ._faults import Fault, FaultPlan, after_processing, before_processing
from ._sim import Execution, ReceivedRequest, Refuse, SimAction, SimRequest, SimResponse

__all__ = [
    "DEFAULT_HTX_HOST",
    "DEFAULT_HTX_UID",
    "DEFAULT_SPOT_ACCOUNT_ID",
    "FIRST_TRANSACT_ID",
    "FIRST_TRANSFER_ID",
    "LEDGER_TRANSFER_TYPES",
    "SIGNATURE_FAILURE",
    "SUPPORTED_PAIRS",
    "TIME_FAILURE",
    "FakeHTX",
    "HTXLedgerRow",
    "signature_matches",
]

DEFAULT_HTX_HOST = "api.huobi.pro"
DEFAULT_HTX_UID = 310_000_001
DEFAULT_SPOT_ACCOUNT_ID = 10_000_001
FIRST_TRANSFER_ID = 176_104_252
"""The id the first transfer answers with (htx.md's example); later ones count up."""
FIRST_TRANSACT_ID = 905_000_000_001
"""The first ledger ``transactId``: a sequence of its own, so a client that expects it to equal
the transfer id notices (htx.md: don't assume they are equal)."""

NATIVE_ACCOUNTS: tuple[str, ...] = tuple(ACCOUNTS.values())
SUPPORTED_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("spot", other) for other in NATIVE_ACCOUNTS if other != "spot"}
    | {(other, "spot") for other in NATIVE_ACCOUNTS if other != "spot"}
)
"""Native (from, to) pairs the transfer endpoint moves between."""
LEDGER_TRANSFER_TYPES: Mapping[tuple[str, str], str] = {
    ("spot", "linear-swap"): "spot-to-linear-swap",
    ("linear-swap", "spot"): "linear-swap-to-spot",
    ("spot", "swap"): "dm-spot-to-swap",
    ("swap", "spot"): "dm-swap-to-spot",
    ("spot", "futures"): "spot-to-futures",
    ("futures", "spot"): "futures-to-spot",
    ("spot", "otc"): "spot-to-otc",
    ("otc", "spot"): "otc-to-spot",
}
"""The spot ledger's ``transferType`` per native pair; pairs without spot write no row."""
# Every account's id: spot's is configurable, the others follow it. Only spot and otc are listed
# by /v1/account/accounts (the contract accounts live on the contract API); the others appear
# as a ledger row's transferer or transferee.
_ACCOUNT_ID_OFFSETS: Mapping[str, int] = {
    "spot": 0,
    "otc": 1,
    "linear-swap": 2,
    "swap": 3,
    "futures": 4,
}
_LISTED_ACCOUNTS = ("spot", "otc")

AUTH_PARAMS = ("AccessKeyId", "SignatureMethod", "SignatureVersion", "Timestamp")
TIMESTAMP_TOLERANCE_MS = 5 * 60 * 1000
MAX_DECIMALS = 8
# The old (gateway) error shape's messages, as HTX words them.
SIGNATURE_FAILURE = "Signature not valid: Verification failure [校验失败]"
TIME_FAILURE = (
    "Signature not valid: Invalid submission time or incorrect time format "
    "[无效的提交时间，或时间格式错误]"  # noqa: RUF001 - HTX's own full-width comma
)

# Business codes (new shape, HTTP 200, success:false). htx.md gives 1301 and 1331 and lists
# 1303..1315 as "rejected: other" without meanings; these meanings are the fake's own.
CODE_INSUFFICIENT = 1301
CODE_BAD_BODY = 1303  # not a JSON object, or a required field missing
CODE_BAD_ACCOUNT = 1304  # from/to is not an HTX account name
CODE_BAD_PAIR = 1305  # from == to, or a pair HTX does not move between
CODE_BAD_CURRENCY = 1306  # unknown currency
CODE_BAD_AMOUNT = 1307  # not a positive decimal (number or string)
CODE_BAD_MARGIN_ACCOUNT = 1308  # missing/malformed for linear-swap, present for any other pair
CODE_TOO_PRECISE = 1331  # more than 8 decimal places
CODE_TIMED_OUT = 1321  # ambiguous in htx.md: "timed out, may have executed"
# The ledger's refusals, in its own shape ({"code", "message", "ok": false}).
LEDGER_INVALID_VALUE = 2002
LEDGER_MISSING_FIELD = 2003

LEDGER_DEFAULT_LIMIT = 100
LEDGER_MAX_LIMIT = 500
LEDGER_MAX_WINDOW_MS = 10 * 24 * 3600 * 1000
LEDGER_MAX_AGE_MS = 180 * 24 * 3600 * 1000
RATE_WINDOW_SECONDS = 1.0

_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_MARGIN_ACCOUNT = re.compile(r"[A-Z0-9]+(-[A-Z0-9]+)?")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
# Exact money: an operation that would round raises instead of losing a digit.
_MONEY = decimal.Context(prec=1000, traps=[decimal.Inexact, decimal.InvalidOperation])


@attrs.frozen(kw_only=True)
class HTXLedgerRow:
    """One row of the fake's spot-account ledger (``GET /v2/account/ledger``).

    ``transact_amt`` is positive into spot and negative out of it; times are the venue's clock.
    """

    account_id: int
    currency: str
    transact_amt: Decimal
    transact_type: str
    transfer_type: str
    transact_id: int
    transact_time: int
    transferer: int
    transferee: int

    def to_wire(self) -> dict[str, object]:
        """The row as the ledger endpoint serialises it (``transactAmt`` a JSON number)."""
        return {
            "accountId": self.account_id,
            "currency": self.currency,
            "transactAmt": self.transact_amt,
            "transactType": self.transact_type,
            "transferType": self.transfer_type,
            "transactId": self.transact_id,
            "transactTime": self.transact_time,
            "transferer": self.transferer,
            "transferee": self.transferee,
        }


class _Gateway(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """Refused by HTX's gateway (old error shape); nothing was processed."""

    def __init__(self, err_code: str, err_msg: str) -> None:
        super().__init__(err_code, err_msg)
        self.err_code = err_code
        self.err_msg = err_msg


class _Refused(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """Refused by the endpoint itself with a numeric code; nothing moved."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def signature_matches(*, secret: str, method: str, host: str, path: str, query: str) -> bool:
    """Whether the raw ``query`` carries a valid HTX signature v2 for this request.

    The values are percent-decoded and re-encoded canonically (uppercase hex), so a client
    that signed lowercase hex fails, as on HTX. A GET signs every parameter; a POST only the
    four auth parameters (its JSON body is not signed). A repeated parameter fails.
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs):
        return False
    signature = params.pop("Signature", None)
    if not signature:
        return False
    if method.upper() == "POST":
        params = {key: value for key, value in params.items() if key in AUTH_PARAMS}
    expected = sign(secret=secret, method=method, host=host, path=path, params=params)
    return hmac.compare_digest(signature.encode(), expected.encode())


class FakeHTX:
    """An in-memory HTX venue; serve it with `FakeTransport` or `serve`.

    Args:
        access_key: the only access key the venue knows (one UID).
        secret: its secret; requests must be signed with it.
        clock: the venue's clock (pass the test's `VirtualClock`); `skew_ms` is added to it.
        balances: native account (``spot``, ``linear-swap``, ``swap``, ``futures``, ``otc``)
            to lowercase currency to amount. The currencies named anywhere here are the ones
            the venue knows; by default 1,000,000 usdt and 100 btc everywhere.
        faults: the plan that injects faults into transfer requests; none by default.
        host: the host the transport routes to this venue.
        rate_limit: transfer requests admitted per second (sliding 1 s window on ``clock``);
            the rest get HTTP 429 and are not processed. ``None``: no limit.
        spot_account_id: the spot account's id; the other accounts' ids follow it.
        uid: the user id the access key belongs to.
        string_numbers: answer the transfer endpoint's ``code`` and ``data`` as JSON strings,
            which htx.md says HTX sometimes does.
    """

    name = "htx"

    def __init__(
        self,
        *,
        access_key: str,
        secret: str,
        clock: Clock = SYSTEM_CLOCK,
        balances: Mapping[str, Mapping[str, Decimal]] | None = None,
        faults: FaultPlan | None = None,
        host: str = DEFAULT_HTX_HOST,
        rate_limit: float | None = None,
        spot_account_id: int = DEFAULT_SPOT_ACCOUNT_ID,
        uid: int = DEFAULT_HTX_UID,
        string_numbers: bool = False,
    ) -> None:
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be positive or None, not {rate_limit!r}")
        self.access_key = access_key
        self._secret = secret
        self.host = host
        self.faults = faults
        self.rate_limit = rate_limit
        self.spot_account_id = spot_account_id
        self.uid = uid
        self.string_numbers = string_numbers
        self.skew_ms = 0
        """Milliseconds the venue's clock runs ahead of ``clock`` (negative: behind)."""
        self.transfer_types: dict[tuple[str, str], str] = dict(LEDGER_TRANSFER_TYPES)
        """The ledger's ``transferType`` per native (from, to) pair. HTX's list of spellings
        is open; replace one to see how a client treats a spelling it does not know."""
        self._clock = clock
        self._balances = _initial_balances(balances)
        self._currencies = frozenset(c for funds in self._balances.values() for c in funds)
        self._audit: list[Execution] = []
        self._ledger: list[HTXLedgerRow] = []
        self._requests: list[ReceivedRequest] = []
        self._admitted: collections.deque[float] = collections.deque()
        self._rate_limited = 0
        self._next_id = FIRST_TRANSFER_ID
        self._next_transact_id = FIRST_TRANSACT_ID
        # handle() never awaits, so tasks cannot interleave inside it; the lock is for a
        # loopback server run from another thread.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeHTX(access_key={self.access_key!r}, host={self.host!r}, uid={self.uid!r})"

    # -- what tests look at ------------------------------------------------------------------

    @property
    def audit(self) -> Sequence[Execution]:
        """Every transfer that really executed, in order."""
        return tuple(self._audit)

    @property
    def requests(self) -> Sequence[ReceivedRequest]:
        """Every request that reached the venue, in order (refused connections excluded)."""
        return tuple(self._requests)

    @property
    def rate_limited(self) -> int:
        """How many transfer requests the ``rate_limit`` refused (faults not included)."""
        return self._rate_limited

    def ledger_rows(self) -> Sequence[HTXLedgerRow]:
        """The spot account's ledger, oldest first."""
        return tuple(self._ledger)

    def executions_matching(
        self, from_account: str, to_account: str, currency: str, amount: Decimal | str | int
    ) -> int:
        """How many times this movement executed (accounts native or unified, amount by value)."""
        source, target = _native(from_account), _native(to_account)
        value = Decimal(amount)
        return sum(
            1
            for e in self._audit
            if (e.from_account, e.to_account, e.currency, e.amount)
            == (source, target, currency.lower(), value)
        )

    def balance(self, account: str, currency: str) -> Decimal:
        """The balance of ``currency`` in ``account`` (native ``linear-swap`` or unified)."""
        return self._balances[_native(account)].get(currency.lower(), Decimal(0))

    def server_time_ms(self) -> int:
        """The venue's clock in Unix milliseconds, skew included."""
        return int(self._clock.time() * 1000) + self.skew_ms

    def account_id(self, account: str) -> int:
        """The id of a native (or unified) account, as the ledger and accounts list show it."""
        return self.spot_account_id + _ACCOUNT_ID_OFFSETS[_native(account)]

    # -- the venue ---------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimAction:
        """Answer one request; faults strike only ``POST /v2/account/transfer``."""
        with self._lock:
            if request.path == TRANSFER_PATH and request.method == "POST":
                return self._transfer_endpoint(request)
            self._record(request, None)
            if request.method == "GET":
                if request.path == TIME_PATH:
                    return _json({"status": "ok", "data": self.server_time_ms()})
                if request.path == ACCOUNTS_PATH:
                    return self._accounts_endpoint(request)
                if request.path == LEDGER_PATH:
                    return self._ledger_endpoint(request)
            if request.path in {TIME_PATH, TRANSFER_PATH, ACCOUNTS_PATH, LEDGER_PATH}:
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
        if self.rate_limit is not None:
            refused = self._throttle(self.rate_limit)
            if refused is not None:
                return refused
        if plan is not None and fault is Fault.CLOCK_SKEW:
            self.skew_ms += plan.skew_ms
            return _gateway_error(_Gateway("api-signature-not-valid", TIME_FAILURE))
        answer = self._answer_transfer(request)
        if fault is Fault.TIMEOUT_CODE_AFTER:
            return self._transfer_answer(
                CODE_TIMED_OUT, None, "Request timed out; the transfer may have executed", False
            )
        return answer if plan is None else after_processing(plan, fault, answer)

    def _throttle(self, rate_limit: float) -> SimResponse | None:
        """Admit a transfer request within ``rate_limit`` per sliding second, else a 429."""
        now = self._clock.time()
        while self._admitted and self._admitted[0] <= now - RATE_WINDOW_SECONDS:
            self._admitted.popleft()
        if len(self._admitted) < rate_limit:
            self._admitted.append(now)
            return None
        self._rate_limited += 1
        wait = self._admitted[0] + RATE_WINDOW_SECONDS - now
        refusal = _Gateway(
            "base-request-exceed-frequency-limit",
            "Exceeded the request frequency limit: too many requests for this UID",
        )
        return _gateway_error(refusal, status=429, headers={"retry-after": str(math.ceil(wait))})

    def _answer_transfer(self, request: SimRequest) -> SimResponse:
        try:
            self._authenticate(request)
            execution = self._transfer(request.body)
        except _Gateway as refused:
            return _gateway_error(refused)
        except _Refused as refused:
            return self._transfer_answer(refused.code, None, refused.message, False)
        return self._transfer_answer(200, int(execution.transfer_id), "Succeed", True)

    def _transfer_answer(
        self, code: int, data: int | None, message: str, success: bool
    ) -> SimResponse:
        wire_code: int | str = str(code) if self.string_numbers else code
        wire_data: int | str | None = str(data) if self.string_numbers and data else data
        return _json({"code": wire_code, "data": wire_data, "message": message, "success": success})

    def _transfer(self, body: bytes) -> Execution:
        fields = _json_object(body)
        source, target = _account(fields, "from"), _account(fields, "to")
        if source == target or (source, target) not in SUPPORTED_PAIRS:
            raise _Refused(CODE_BAD_PAIR, f"transfers from {source} to {target} are not supported")
        currency = fields.get("currency")
        if not isinstance(currency, str) or currency.lower() not in self._currencies:
            raise _Refused(CODE_BAD_CURRENCY, f"currency {currency!r} is not supported")
        currency = currency.lower()
        _check_margin_account(fields, source, target)
        amount = _amount(fields.get("amount", None))
        available = self._balances[source].get(currency, Decimal(0))
        if amount > available:
            raise _Refused(CODE_INSUFFICIENT, "Insufficient amount available")
        return self._execute(source, target, currency, amount)

    def _execute(self, source: str, target: str, currency: str, amount: Decimal) -> Execution:
        # Compute both sides before writing either: the move is all or nothing.
        debited = _MONEY.subtract(self._balances[source].get(currency, Decimal(0)), amount)
        credited = _MONEY.add(self._balances[target].get(currency, Decimal(0)), amount)
        self._balances[source][currency] = debited
        self._balances[target][currency] = credited
        execution = Execution(
            venue=self.name,
            biz_id=None,
            from_account=source,
            to_account=target,
            currency=currency,
            amount=amount,
            transfer_id=str(self._next_id),
            executed_at=datetime.fromtimestamp(self._clock.time(), tz=timezone.utc),
        )
        self._next_id += 1
        self._audit.append(execution)
        transfer_type = self.transfer_types.get((source, target))
        if transfer_type is not None:
            self._ledger.append(
                HTXLedgerRow(
                    account_id=self.spot_account_id,
                    currency=currency,
                    transact_amt=amount if target == "spot" else _MONEY.minus(amount),
                    transact_type="transfer",
                    transfer_type=transfer_type,
                    transact_id=self._next_transact_id,
                    transact_time=self.server_time_ms(),
                    transferer=self.account_id(source),
                    transferee=self.account_id(target),
                )
            )
            self._next_transact_id += 1
        return execution

    def _accounts_endpoint(self, request: SimRequest) -> SimResponse:
        try:
            self._authenticate(request)
        except _Gateway as refused:
            return _gateway_error(refused)
        accounts = [
            {"id": self.account_id(kind), "type": kind, "subtype": "", "state": "working"}
            for kind in _LISTED_ACCOUNTS
        ]
        return _json({"status": "ok", "data": accounts})

    def _ledger_endpoint(self, request: SimRequest) -> SimResponse:
        try:
            params = self._authenticate(request)
            rows, next_id = self._ledger_page(params)
        except _Gateway as refused:
            return _gateway_error(refused)
        except _Refused as refused:
            return _json({"code": refused.code, "message": refused.message, "ok": False})
        page: dict[str, object] = {
            "code": 200,
            "message": "success",
            "data": [row.to_wire() for row in rows],
        }
        if next_id is not None:
            page["nextId"] = next_id
        page["ok"] = True
        return _json(page)

    def _ledger_page(self, params: Mapping[str, str]) -> tuple[list[HTXLedgerRow], int | None]:
        """Select one page, oldest first; ``nextId`` only when more rows follow a full page."""
        account = params.get("accountId")
        if not account:
            raise _Refused(LEDGER_MISSING_FIELD, "missing mandatory field: accountId")
        if account != str(self.spot_account_id):
            raise _Refused(LEDGER_INVALID_VALUE, f"invalid accountId {account!r}")
        now_ms = self.server_time_ms()
        limit = _query_int(params, "limit", LEDGER_DEFAULT_LIMIT)
        if not 1 <= limit <= LEDGER_MAX_LIMIT:
            raise _Refused(LEDGER_INVALID_VALUE, f"limit must be 1..{LEDGER_MAX_LIMIT}")
        end_ms = _query_int(params, "endTime", now_ms)
        start_ms = _query_int(params, "startTime", end_ms - LEDGER_MAX_WINDOW_MS)
        if end_ms < start_ms:
            raise _Refused(LEDGER_INVALID_VALUE, "endTime is before startTime")
        if end_ms - start_ms > LEDGER_MAX_WINDOW_MS:
            raise _Refused(LEDGER_INVALID_VALUE, "the query window is longer than 10 days")
        if start_ms < now_ms - LEDGER_MAX_AGE_MS:
            raise _Refused(LEDGER_INVALID_VALUE, "startTime is more than 180 days ago")
        from_id = _query_int(params, "fromId", 0)
        currency = params.get("currency", "").lower()
        kinds = set(filter(None, params.get("transactTypes", "").split(",")))
        selected = [
            row
            for row in self._ledger
            if start_ms <= row.transact_time <= end_ms
            and row.transact_id >= from_id
            and (not currency or row.currency == currency)
            and (not kinds or row.transact_type in kinds)
        ]
        more = len(selected) > limit
        return selected[:limit], selected[limit].transact_id if more else None

    def _authenticate(self, request: SimRequest) -> Mapping[str, str]:
        """Check the auth parameters, the clock window and the signature, in that order.

        Returns the decoded query parameters (without ``Signature``).
        """
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        params.pop("Signature", None)
        key = params.get("AccessKeyId")
        if not key:
            raise _Gateway("login-required", "Signature not valid: AccessKeyId is required")
        if params.get("SignatureMethod") != "HmacSHA256" or params.get("SignatureVersion") != "2":
            raise _Gateway("api-signature-not-valid", SIGNATURE_FAILURE)
        timestamp_ms = _timestamp_ms(params.get("Timestamp", ""))
        if timestamp_ms is None or abs(timestamp_ms - self.server_time_ms()) > (
            TIMESTAMP_TOLERANCE_MS
        ):
            raise _Gateway("api-signature-not-valid", TIME_FAILURE)
        if key != self.access_key:
            raise _Gateway("api-signature-not-valid", SIGNATURE_FAILURE)
        valid = signature_matches(
            secret=self._secret,
            method=request.method,
            host=request.headers.get("host", ""),
            path=request.path,
            query=request.query,
        )
        if not valid:
            raise _Gateway("api-signature-not-valid", SIGNATURE_FAILURE)
        return params


def _native(account: str) -> str:
    name = account.lower()
    native = ACCOUNTS.get(name, name)
    if native not in NATIVE_ACCOUNTS:
        raise ValueError(f"{account!r} is not an HTX account; use one of {NATIVE_ACCOUNTS}")
    return native


def _initial_balances(
    balances: Mapping[str, Mapping[str, Decimal]] | None,
) -> dict[str, dict[str, Decimal]]:
    if balances is None:
        return {
            account: {"usdt": Decimal("1000000"), "btc": Decimal("100")}
            for account in NATIVE_ACCOUNTS
        }
    result: dict[str, dict[str, Decimal]] = {account: {} for account in NATIVE_ACCOUNTS}
    for account, funds in balances.items():
        if account not in result:
            raise ValueError(f"{account!r} is not an HTX account; use one of {NATIVE_ACCOUNTS}")
        for currency, amount in funds.items():
            if currency != currency.lower() or not isinstance(amount, Decimal) or amount < 0:
                raise ValueError(
                    "balances need lowercase currencies and non-negative Decimal amounts, "
                    f"not {currency!r}: {amount!r}"
                )
            result[account][currency] = amount
    return result


def _timestamp_ms(text: str) -> int | None:
    """HTX's ``Timestamp`` (UTC ``YYYY-MM-DDThh:mm:ss``) in Unix ms; ``None`` if malformed."""
    if not _TIMESTAMP.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    milliseconds = int(moment.timestamp()) * 1000
    # Round-trip through the client's formatter: the one format HTX takes, nothing looser.
    return milliseconds if format_timestamp(milliseconds) == text else None


def _json(
    payload: Mapping[str, object], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> SimResponse:
    """Serialise compactly; a ``Decimal`` becomes a JSON number with exactly its digits."""
    numbers: list[str] = []

    def plain(value: object) -> object:
        if isinstance(value, Decimal):
            numbers.append(format(value, "f"))
            return f"\0{len(numbers) - 1}\0"
        if isinstance(value, Mapping):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    text = json.dumps(plain(payload), separators=(",", ":"), ensure_ascii=False)
    text = re.sub(r'"\\u0000([0-9]+)\\u0000"', lambda m: numbers[int(m.group(1))], text)
    return SimResponse(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        body=text.encode(),
    )


def _gateway_error(
    refused: _Gateway, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> SimResponse:
    # HTX's gateway answers auth refusals with HTTP 200 in the old envelope.
    payload = {"status": "error", "err-code": refused.err_code, "err-msg": refused.err_msg}
    return _json({**payload, "data": None}, status=status, headers=headers)


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        fields = json.loads(body, parse_float=Decimal)
    except ValueError:
        raise _Refused(CODE_BAD_BODY, "the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise _Refused(CODE_BAD_BODY, "the body must be a JSON object")
    return fields


def _account(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise _Refused(CODE_BAD_BODY, f"missing mandatory field: {name}")
    if not isinstance(value, str) or value not in NATIVE_ACCOUNTS:
        raise _Refused(CODE_BAD_ACCOUNT, f"{name} must be one of {', '.join(NATIVE_ACCOUNTS)}")
    return value


def _check_margin_account(fields: Mapping[str, object], source: str, target: str) -> None:
    margin = fields.get("margin-account")
    if "linear-swap" not in (source, target):
        if margin is not None:
            raise _Refused(
                CODE_BAD_MARGIN_ACCOUNT, "margin-account applies only to linear-swap transfers"
            )
        return
    if not isinstance(margin, str) or not _MARGIN_ACCOUNT.fullmatch(margin):
        raise _Refused(
            CODE_BAD_MARGIN_ACCOUNT,
            "a linear-swap transfer needs margin-account: USDT (cross) or e.g. BTC-USDT",
        )


def _amount(value: object) -> Decimal:
    """A JSON number (parsed as ``Decimal``, never a float) or a plain decimal string."""
    if value is None:
        raise _Refused(CODE_BAD_BODY, "missing mandatory field: amount")
    if isinstance(value, str):
        if not _PLAIN_DECIMAL.fullmatch(value):
            raise _Refused(CODE_BAD_AMOUNT, f"amount {value!r} is not a decimal")
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    else:
        raise _Refused(CODE_BAD_AMOUNT, f"amount {value!r} is not a decimal")
    if not amount.is_finite() or not amount > 0:
        raise _Refused(CODE_BAD_AMOUNT, "amount must be greater than zero")
    # The scale as written: "1.000000000" has nine decimal places even though it equals 1.
    if -int(amount.as_tuple().exponent) > MAX_DECIMALS:
        raise _Refused(CODE_TOO_PRECISE, f"amount has more than {MAX_DECIMALS} decimal places")
    return amount


def _query_int(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not _INTEGER.fullmatch(text):
        raise _Refused(LEDGER_INVALID_VALUE, f"{name} must be an integer")
    return int(text)
