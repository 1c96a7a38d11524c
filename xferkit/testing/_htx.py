"""A fake HTX (Huobi) API that checks requests the way shared/venues/htx.md says HTX does.

It serves ``GET /v1/common/timestamp``, ``POST /v2/account/transfer`` (and the older
``POST /v1/futures/transfer`` ccxt uses for futures), ``GET /v1/account/accounts``,
``GET /v1/account/accounts/{id}/balance`` and ``GET /v2/account/ledger``. It verifies signature
v2 over the host actually called, keeps balances per native account and writes a spot-ledger
row for every transfer that touches spot. It has **no** de-duplication: HTX has no idempotency
key, so every accepted request moves money, a resend included. `FakeHTX.audit` records what
really executed.

Codes and messages follow HTX's response-code tables (see `MESSAGES`); the ledger answers
newest first and pages with ``nextId``. Where HTX is silent the choice is the simulation's own
and docs/testing.md says so: a ``margin-account`` on a transfer that does not touch linear-swap
(502), when ``nextId`` is sent (only when more rows follow a full page), and no amount limits
(1303..1314 are never answered).
"""

from __future__ import annotations

import collections
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import parse_qsl

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
from ._faults import Fault, FaultPlan
from ._htx_ledger import HTXLedgerRow, LedgerRefusal, ledger_page
from ._sim import Execution, SimAction, SimRequest, SimResponse
from ._venue import MONEY, SimulatedVenue, plain_decimal

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
ACCESS_KEY_FAILURE = "Signature not valid: Incorrect Access key [Access key错误]"
TIME_FAILURE = (
    "Signature not valid: Invalid submission time or incorrect time format "
    "[无效的提交时间，或时间格式错误]"  # noqa: RUF001 - HTX's own full-width comma
)
TIME_FAILURE_CHINESE = "Signature not valid: 无效的提交时间，或时间格式错误"  # noqa: RUF001
"""The clock-skew message of older HTX deployments: the Chinese wording only (HTX's
response-code table, code 12001 "无效的提交时间")."""
TIME_MESSAGES = ("english", "chinese")
FORBIDDEN_BODY = "<html><head><title>403 Forbidden</title></head><body>403 Forbidden</body></html>"

# Business codes (new shape, HTTP 200, success:false), from HTX's response-code tables.
CODE_INSUFFICIENT = 1301
CODE_MISSING = 504  # "Lack of parameter"
CODE_INVALID = 502  # "Invalid parameter"
CODE_SAME_ACCOUNT = 10001  # from == to
CODE_UNSUPPORTED_PAIR = 10002  # a pair the endpoint does not move
CODE_UNKNOWN_ACCOUNT = 1315  # "Wrong transfer type": from/to is not an account name
CODE_NOT_POSITIVE = 1322  # amount <= 0
CODE_TOO_PRECISE = 1331  # more than 8 decimal places
CODE_UNKNOWN_CURRENCY = 10000
CODE_NO_SUCH_MARGIN_ACCOUNT = 1012  # "account doesn't exist"
CODE_TIMED_OUT = 1321  # ambiguous in htx.md: "Transfer failed. Please try again later"
MESSAGES: Mapping[int, str] = {
    CODE_INSUFFICIENT: "Insufficient amount available",
    CODE_MISSING: "Lack of parameter",
    CODE_INVALID: "Invalid parameter",
    CODE_SAME_ACCOUNT: "transfer within single business not supported",
    CODE_UNSUPPORTED_PAIR: "This transfer is not supported",
    CODE_UNKNOWN_ACCOUNT: "Wrong transfer type",
    CODE_NOT_POSITIVE: "amount must be > 0",
    CODE_TOO_PRECISE: "precision above 8 digits",
    CODE_UNKNOWN_CURRENCY: "Currency does not exist",
    CODE_NO_SUCH_MARGIN_ACCOUNT: "account doesn't exist",
    CODE_TIMED_OUT: "Transfer failed. Please try again later",
}
"""The message HTX answers each transfer code with."""
RATE_WINDOW_SECONDS = 1.0
FUTURES_TRANSFER_PATH = "/v1/futures/transfer"
"""The older spot <-> futures endpoint ccxt uses (``type``: ``pro-to-futures``,
``futures-to-pro``); it answers in the old envelope."""
_FUTURES_TYPES: Mapping[str, tuple[str, str]] = {
    "pro-to-futures": ("spot", "futures"),
    "futures-to-pro": ("futures", "spot"),
}
_BALANCE_PATH = re.compile(r"/v1/account/accounts/([0-9]+)/balance")

_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_ISOLATED_PAIR = re.compile(r"([a-z0-9]+)-([a-z0-9]+)")


class _Gateway(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """Refused by HTX's gateway (old error shape); nothing was processed."""

    def __init__(self, err_code: str, err_msg: str) -> None:
        super().__init__(err_code, err_msg)
        self.err_code = err_code
        self.err_msg = err_msg


class _Refused(Exception):  # noqa: N818 - control flow inside the fake, never raised to users
    """Refused by the endpoint itself with a numeric code; nothing moved."""

    def __init__(self, code: int, message: str | None = None) -> None:
        message = message or MESSAGES.get(code, "Invalid parameter")
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


class FakeHTX(SimulatedVenue):
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
        time_message: how a clock outside ±5 minutes is worded: ``"english"`` (today's
            message, with the Chinese after it) or ``"chinese"`` (older deployments).
    """

    name = "htx"
    label = "HTX"

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
        time_message: str = "english",
    ) -> None:
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be positive or None, not {rate_limit!r}")
        if time_message not in TIME_MESSAGES:
            raise ValueError(f"time_message must be one of {TIME_MESSAGES}, not {time_message!r}")
        super().__init__(
            clock=clock, balances=balances, accounts=NATIVE_ACCOUNTS, faults=faults, host=host
        )
        self.access_key = access_key
        self._secret = secret
        self.rate_limit = rate_limit
        self.spot_account_id = spot_account_id
        self.uid = uid
        self.string_numbers = string_numbers
        self.time_failure = TIME_FAILURE if time_message == "english" else TIME_FAILURE_CHINESE
        """The ``err-msg`` a request outside the clock window gets."""
        self.transfer_types: dict[tuple[str, str], str] = dict(LEDGER_TRANSFER_TYPES)
        """The ledger's ``transferType`` per native (from, to) pair. HTX's list of spellings
        is open; replace one to see how a client treats a spelling it does not know."""
        self._ledger: list[HTXLedgerRow] = []
        self._admitted: collections.deque[float] = collections.deque()
        self._rate_limited = 0
        self._next_id = FIRST_TRANSFER_ID
        self._next_transact_id = FIRST_TRANSACT_ID

    def __repr__(self) -> str:
        return f"FakeHTX(access_key={self.access_key!r}, host={self.host!r}, uid={self.uid!r})"

    # -- what tests look at ------------------------------------------------------------------

    @property
    def rate_limited(self) -> int:
        """How many transfer requests the ``rate_limit`` refused (faults not included)."""
        return self._rate_limited

    def ledger_rows(self) -> Sequence[HTXLedgerRow]:
        """The spot account's ledger, oldest first (the endpoint answers newest first)."""
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

    def account_id(self, account: str) -> int:
        """The id of a native (or unified) account, as the ledger and accounts list show it."""
        return self.spot_account_id + _ACCOUNT_ID_OFFSETS[_native(account)]

    # -- the venue ---------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimAction:
        """Answer one request; faults strike only the transfer endpoints."""
        with self._lock:
            if request.method == "POST" and request.path in {
                TRANSFER_PATH,
                FUTURES_TRANSFER_PATH,
            }:
                return self._transfer_endpoint(request)
            self._record(request, None)
            if request.method == "GET":
                if request.body:
                    # HTX's gateway forbids a GET that carries a body, before anything else.
                    return SimResponse.text(403, FORBIDDEN_BODY)
                if request.path == TIME_PATH:
                    return _json({"status": "ok", "data": self.server_time_ms()})
                if request.path == ACCOUNTS_PATH:
                    return self._accounts_endpoint(request)
                if request.path == LEDGER_PATH:
                    return self._ledger_endpoint(request)
                balance = _BALANCE_PATH.fullmatch(request.path)
                if balance is not None:
                    return self._balance_endpoint(request, int(balance.group(1)))
            if request.path in {TIME_PATH, TRANSFER_PATH, ACCOUNTS_PATH, LEDGER_PATH}:
                return SimResponse.text(405, "Method Not Allowed")
            return SimResponse.text(404, "Not Found")

    def _transfer_endpoint(self, request: SimRequest) -> SimAction:
        fault, early = self._strike(request)
        if early is not None:
            return early
        if self.rate_limit is not None:
            refused = self._throttle(self.rate_limit)
            if refused is not None:
                return refused
        if self._skewed(fault):
            return _gateway_error(_Gateway("api-signature-not-valid", self.time_failure))
        if request.path == FUTURES_TRANSFER_PATH:
            answer = self._answer_futures_transfer(request)
        else:
            answer = self._answer_transfer(request)
        if fault is Fault.TIMEOUT_CODE_AFTER:
            return self._transfer_answer(
                CODE_TIMED_OUT, None, MESSAGES[CODE_TIMED_OUT], success=False
            )
        return self._after(fault, answer)

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
            return self._transfer_answer(refused.code, None, refused.message, success=False)
        return self._transfer_answer(200, int(execution.transfer_id), "Succeed", success=True)

    def _answer_futures_transfer(self, request: SimRequest) -> SimResponse:
        """``POST /v1/futures/transfer``: the same rules, answered in the old envelope."""
        try:
            self._authenticate(request)
            execution = self._transfer_fields(_futures_fields(request.body))
        except _Gateway as refused:
            return _gateway_error(refused)
        except _Refused as refused:
            return _gateway_error(_Gateway(str(refused.code), refused.message))
        return _json({"status": "ok", "data": int(execution.transfer_id)})

    def _transfer_answer(
        self, code: int, data: int | None, message: str, *, success: bool
    ) -> SimResponse:
        wire_code: int | str = str(code) if self.string_numbers else code
        wire_data: int | str | None = str(data) if self.string_numbers and data else data
        return _json({"code": wire_code, "data": wire_data, "message": message, "success": success})

    def _transfer(self, body: bytes) -> Execution:
        return self._transfer_fields(_json_object(body))

    def _transfer_fields(self, fields: Mapping[str, object]) -> Execution:
        """Check a transfer's fields in HTX's order, then move the money."""
        for name in ("from", "to", "currency", "amount"):
            if fields.get(name) in (None, ""):
                raise _Refused(CODE_MISSING)
        source, target = _account(fields, "from"), _account(fields, "to")
        if source == target:
            raise _Refused(CODE_SAME_ACCOUNT)
        if (source, target) not in SUPPORTED_PAIRS:
            raise _Refused(CODE_UNSUPPORTED_PAIR)
        currency = fields.get("currency")
        if not isinstance(currency, str) or currency.lower() not in self._currencies:
            raise _Refused(CODE_UNKNOWN_CURRENCY)
        currency = currency.lower()
        self._check_margin_account(fields, source, target)
        amount = _amount(fields.get("amount"))
        available = self._balances[source].get(currency, Decimal(0))
        if amount > available:
            raise _Refused(CODE_INSUFFICIENT)
        return self._execute(source, target, currency, amount)

    def _check_margin_account(self, fields: Mapping[str, object], source: str, target: str) -> None:
        """``USDT`` (cross) or an isolated pair of known currencies, in either case.

        HTX does not say what it does with a ``margin-account`` on a transfer that does not
        touch linear-swap; the simulation refuses it as an invalid parameter (502).
        """
        margin = fields.get("margin-account")
        if "linear-swap" not in (source, target):
            if margin is not None:
                raise _Refused(CODE_INVALID)
            return
        if margin is None or margin == "":
            raise _Refused(CODE_MISSING)
        if not isinstance(margin, str):
            raise _Refused(CODE_INVALID)
        name = margin.lower()
        if name == "usdt":
            return
        pair = _ISOLATED_PAIR.fullmatch(name)
        if pair is None or not set(pair.groups()) <= self._currencies:
            raise _Refused(CODE_NO_SUCH_MARGIN_ACCOUNT)

    def _execute(self, source: str, target: str, currency: str, amount: Decimal) -> Execution:
        execution = self._move(
            source=source,
            target=target,
            currency=currency,
            amount=amount,
            transfer_id=str(self._next_id),
        )
        self._next_id += 1
        transfer_type = self.transfer_types.get((source, target))
        if transfer_type is not None:
            self._ledger.append(
                HTXLedgerRow(
                    account_id=self.spot_account_id,
                    currency=currency,
                    transact_amt=amount if target == "spot" else MONEY.minus(amount),
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

    def _balance_endpoint(self, request: SimRequest, account_id: int) -> SimResponse:
        """``GET /v1/account/accounts/{id}/balance`` for a listed account of the caller."""
        try:
            self._authenticate(request)
        except _Gateway as refused:
            return _gateway_error(refused)
        kind = next((k for k in _LISTED_ACCOUNTS if self.account_id(k) == account_id), None)
        if kind is None:
            return _gateway_error(
                _Gateway("account-frozen-account-inexistent-error", "account for id inexistent")
            )
        funds = self._balances[kind]
        entries = [
            {"currency": currency, "type": part, "balance": format(value, "f")}
            for currency in sorted(self._currencies)
            for part, value in (("trade", funds.get(currency, Decimal(0))), ("frozen", Decimal(0)))
        ]
        data = {"id": account_id, "type": kind, "state": "working", "list": entries}
        return _json({"status": "ok", "data": data})

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
        try:
            return ledger_page(
                self._ledger,
                params,
                now_ms=self.server_time_ms(),
                spot_account_id=self.spot_account_id,
            )
        except LedgerRefusal as refused:
            raise _Refused(refused.code, refused.message) from None

    def _authenticate(self, request: SimRequest) -> Mapping[str, str]:
        """Check the auth parameters, the clock window and the signature, in that order.

        Returns the decoded query parameters (without ``Signature``).
        """
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        signature = params.pop("Signature", None)
        key = params.get("AccessKeyId")
        if not key or not signature:
            raise _Gateway("login-required", "Signature not valid: AccessKeyId is required")
        if params.get("SignatureMethod") != "HmacSHA256" or params.get("SignatureVersion") != "2":
            raise _Gateway("api-signature-not-valid", SIGNATURE_FAILURE)
        timestamp_ms = _timestamp_ms(params.get("Timestamp", ""))
        if timestamp_ms is None or abs(timestamp_ms - self.server_time_ms()) > (
            TIMESTAMP_TOLERANCE_MS
        ):
            raise _Gateway("api-signature-not-valid", self.time_failure)
        if key != self.access_key:
            raise _Gateway("api-signature-not-valid", ACCESS_KEY_FAILURE)
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
        fields = json.loads(body, parse_float=plain_decimal)
    except ValueError:
        raise _Refused(CODE_INVALID) from None
    if not isinstance(fields, dict):
        raise _Refused(CODE_INVALID)
    return fields


def _futures_fields(body: bytes) -> Mapping[str, object]:
    """The fields of a ``/v1/futures/transfer`` body, its ``type`` turned into from and to."""
    fields = dict(_json_object(body))
    pair = _FUTURES_TYPES.get(str(fields.pop("type", "")))
    if pair is None:
        raise _Refused(CODE_INVALID)
    fields["from"], fields["to"] = pair
    return fields


def _account(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or value not in NATIVE_ACCOUNTS:
        raise _Refused(CODE_UNKNOWN_ACCOUNT)
    return value


def _amount(value: object) -> Decimal:
    """A JSON number (parsed as ``Decimal``, never a float) or a plain decimal string."""
    if isinstance(value, str):
        if not _PLAIN_DECIMAL.fullmatch(value):
            raise _Refused(CODE_INVALID)
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    else:
        raise _Refused(CODE_INVALID)
    if not amount.is_finite():
        raise _Refused(CODE_INVALID)
    if not amount > 0:
        raise _Refused(CODE_NOT_POSITIVE)
    # The scale as written: "1.000000000" has nine decimal places even though it equals 1.
    if -int(amount.as_tuple().exponent) > MAX_DECIMALS:
        raise _Refused(CODE_TOO_PRECISE)
    return amount
