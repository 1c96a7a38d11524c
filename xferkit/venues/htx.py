"""HTX (formerly Huobi): ``POST /v2/account/transfer`` (see shared/venues/htx.md).

HTX has no client idempotency key, so an ambiguous attempt must never be resent blindly: the
engine settles it by finding (or provably not finding) the transfer in the spot account's
ledger. This module supplies the requests and the matching rules for that; the engine decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlsplit

import attrs

from .._exceptions import (
    AuthenticationError,
    InsufficientBalanceError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
    TransferRejectedError,
    VenueError,
)
from .._http import HttpRequest, HttpResponse
from .._outcomes import Ambiguous, NotProcessed, Outcome, Rejected, Succeeded
from .._validation import (
    amount_text,
    base_url_field,
    check_credential,
    credential_field,
    normalize_amount,
    normalize_currency,
)
from ._base import (
    AmbiguityPolicy,
    LedgerPage,
    LedgerRow,
    TransferSpec,
    account_fingerprint,
    compact_json,
    env_credential,
    http_triage,
    resolve_account,
    strip_base_url,
)

__all__ = [
    "DEFAULT_HTX_BASE_URL",
    "DEFAULT_LEDGER_MARGIN_SECONDS",
    "DEFAULT_SETTLE_SECONDS",
    "HTX",
    "MIN_LEDGER_MARGIN_SECONDS",
    "MIN_SETTLE_SECONDS",
    "canonical_query",
    "classify_code",
    "sign",
]

DEFAULT_HTX_BASE_URL = "https://api.huobi.pro"
TRANSFER_PATH = "/v2/account/transfer"
TIME_PATH = "/v1/common/timestamp"
ACCOUNTS_PATH = "/v1/account/accounts"
LEDGER_PATH = "/v2/account/ledger"
LEDGER_PAGE_SIZE = 500
MAX_DECIMALS = 8

# Unified account name -> HTX's own name. HTX's names are accepted too, in any case.
ACCOUNTS: Mapping[str, str] = {
    "spot": "spot",
    "usdt_futures": "linear-swap",
    "coin_futures": "swap",
    "futures": "futures",
    "otc": "otc",
}

# Pairs HTX moves between: exactly one side is spot (venues/htx.md). No HTX page documents
# swap <-> futures, and the spot ledger could never show it, so one lost answer would leave
# it UNKNOWN for good: it is refused before anything is recorded.
SUPPORTED_PAIRS = frozenset(
    {("spot", other) for other in ACCOUNTS if other != "spot"}
    | {(other, "spot") for other in ACCOUNTS if other != "spot"}
)

# The ledger's transferType for each direction; both spellings seen for coin-margined swaps.
TRANSFER_TYPES: Mapping[tuple[str, str], frozenset[str]] = {
    ("spot", "usdt_futures"): frozenset({"spot-to-linear-swap"}),
    ("usdt_futures", "spot"): frozenset({"linear-swap-to-spot"}),
    ("spot", "coin_futures"): frozenset({"dm-spot-to-swap", "spot-to-swap"}),
    ("coin_futures", "spot"): frozenset({"dm-swap-to-spot", "swap-to-spot"}),
    ("spot", "futures"): frozenset({"spot-to-futures"}),
    ("futures", "spot"): frozenset({"futures-to-spot"}),
    ("spot", "otc"): frozenset({"spot-to-otc"}),
    ("otc", "spot"): frozenset({"otc-to-spot"}),
}
# Spellings the ledger uses for other movements (venues/htx.md): such a row is not this
# transfer. The list is open: a spelling in neither table means "cannot tell".
_OTHER_TRANSFER_TYPES = frozenset(
    {
        "margin-transfer-in",
        "margin-transfer-out",
        "spot-to-super-margin",
        "super-margin-to-spot",
        "master-transfer-in",
        "master-transfer-out",
        "sub-transfer-in",
        "sub-transfer-out",
    }
)
_OTHER_TRANSFER_PREFIXES = ("lock-", "user-lock-", "agency-")
_KNOWN_TRANSFER_TYPES = frozenset().union(*TRANSFER_TYPES.values())
# htx.md: "USDT" (the cross margin account) or an isolated pair "BASE-QUOTE" (either case).
_MARGIN_ACCOUNT = re.compile(r"USDT|[A-Z0-9]+-[A-Z0-9]+")


def format_timestamp(timestamp_ms: int) -> str:
    """HTX's ``Timestamp``: UTC ``YYYY-MM-DDThh:mm:ss``, no millis, no zone."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def canonical_query(params: Mapping[str, str]) -> str:
    """Sort by key (ASCII) and percent-encode values with uppercase hex, joined by ``&``."""
    return "&".join(f"{key}={quote(str(params[key]), safe='')}" for key in sorted(params))


def sign(
    *,
    secret: str,
    method: str,
    host: str,
    path: str,
    params: Mapping[str, str],
) -> str:
    """Return HTX's signature v2: base64(HMAC-SHA256(secret, pre-sign text)).

    The pre-sign text is ``METHOD\\nhost\\npath\\ncanonical query``; for a POST, ``params``
    holds only the four auth parameters (the JSON body is not signed).
    """
    text = "\n".join((method.upper(), host.lower(), path, canonical_query(params)))
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _codes(first: int, last: int) -> set[str]:
    return {str(n) for n in range(first, last + 1)}


# Today's English wording, and the Chinese-only one older deployments answer
# ("无效的提交时间" then "或时间格式错误", HTX's code 12001; "提交时间格式错误" when malformed).
_CLOCK_MESSAGES = ("invalid submission time", "incorrect time format", "提交时间", "时间格式")
_NOT_PROCESSED_AUTH = {"api-signature-not-valid", "login-required", "512", "513", "1003"}
_NOT_PROCESSED_PERMISSION = {"403"}
_NOT_PROCESSED_RATE = {"429", "base-request-exceed-frequency-limit", "rate-too-many-requests"}
_BALANCE = {"1301", "1047", "1048", "dw-insufficient-balance"}
_REJECTED = (
    {"501", "502", "504", "20001", "1010", "1012", "1013", "1018", "1089", "1098", "1099"}
    | _codes(10000, 10011)
    | _codes(1102, 1114)
    | _codes(1303, 1315)
    | {"1319", "1320", "1322"}
    | _codes(1327, 1331)
    | {"1460", "2014", "4001"}
)
_AMBIGUOUS = {
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
}


def classify_code(code: str, message: str, *, http_status: int | None = None) -> Outcome:
    """Sort an HTX error code (either envelope) into its outcome class per the venue table.

    A code missing from the table is ambiguous: on HTX that means "reconcile", which is safe
    whatever the code meant, whereas calling it a refusal could hide an executed transfer.
    """
    venue = HTX.name

    def error(cls: type[VenueError]) -> VenueError:
        return cls(message, venue=venue, code=code, http_status=http_status)

    if code == "api-signature-not-valid" and any(m in message.lower() for m in _CLOCK_MESSAGES):
        return NotProcessed(error=error(AuthenticationError), resync_clock=True)
    if code in _NOT_PROCESSED_AUTH:
        return NotProcessed(error=error(AuthenticationError))
    if code in _NOT_PROCESSED_PERMISSION:
        return NotProcessed(error=error(PermissionDeniedError))
    if code in _NOT_PROCESSED_RATE:
        return NotProcessed(error=error(RateLimitError))
    if code in _BALANCE:
        return Rejected(error(InsufficientBalanceError))
    if code in _REJECTED:
        return Rejected(error(TransferRejectedError))
    if code in _AMBIGUOUS:
        return Ambiguous(reason=f"venue answered {code}")
    return Ambiguous(reason=f"unrecognised venue code {code}")


def _check_positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidRequestError(f"{attribute.name} must be a positive number, not {value!r}")


DEFAULT_SETTLE_SECONDS = 10.0
DEFAULT_LEDGER_MARGIN_SECONDS = 2.0
MIN_SETTLE_SECONDS = 2.0
"""The shortest `HTX.settle_seconds`: how long after an attempt ended a transfer the venue
committed may still be missing from its ledger. Shorter, a late row reads as "absent" and the
transfer is sent again: a double execution."""
MIN_LEDGER_MARGIN_SECONDS = 1.0
"""The shortest `HTX.ledger_margin_seconds`: how far the ledger's ``transactTime`` may sit
before the send's venue time as measured (HTX's services stamp rows on their own clocks).
Narrower, the row can fall outside the search window: "absent" again."""


def _floor(minimum: float) -> Callable[[object, attrs.Attribute[float], float], None]:
    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
            raise InvalidRequestError(
                f"{attribute.name} must be at least {minimum} s, not {value!r}: shorter, a "
                "transfer the ledger does not show yet is sent again"
            )

    return check


@attrs.frozen
class HTX:
    """Credentials and settings for HTX; pass it to `xferkit.Client`.

    Attributes:
        access_key: the API access key (``AccessKeyId``).
        secret: the secret key; used only to sign, never shown in repr, logs or errors.
        base_url: the API host, for ``api-aws.huobi.pro``, a proxy or the simulated venue.
        rate_limit: client-side ceiling in transfer requests per second (HTX allows 1 per
            second per UID, summed over all of the UID's keys).
        settle_seconds: after an ambiguous attempt the ledger is read at once; a transfer not
            in it this long after the attempt ended is taken as not executed and sent again
            (at least `MIN_SETTLE_SECONDS`).
        ledger_margin_seconds: clock margin around the send time when searching the ledger
            (at least `MIN_LEDGER_MARGIN_SECONDS`).
    """

    name = "htx"
    ambiguity_policy = AmbiguityPolicy.RECONCILE

    access_key: str = attrs.field(validator=credential_field)
    secret: str = attrs.field(repr=False, validator=credential_field)
    base_url: str = attrs.field(
        default=DEFAULT_HTX_BASE_URL,
        kw_only=True,
        converter=strip_base_url,
        validator=base_url_field,
    )
    rate_limit: float = attrs.field(default=1.0, kw_only=True, validator=_check_positive)
    settle_seconds: float = attrs.field(
        default=DEFAULT_SETTLE_SECONDS, kw_only=True, validator=_floor(MIN_SETTLE_SECONDS)
    )
    ledger_margin_seconds: float = attrs.field(
        default=DEFAULT_LEDGER_MARGIN_SECONDS,
        kw_only=True,
        validator=_floor(MIN_LEDGER_MARGIN_SECONDS),
    )

    @classmethod
    def from_env(cls, *, base_url: str | None = None) -> HTX:
        """Read ``XFERKIT_HTX_ACCESS_KEY``, ``XFERKIT_HTX_SECRET`` and ``XFERKIT_HTX_BASE_URL``."""
        url = base_url or os.environ.get("XFERKIT_HTX_BASE_URL") or DEFAULT_HTX_BASE_URL
        # Checked here too, so a bad value is named by its variable, not by the field.
        key, secret = (
            check_credential(env_credential(name), name)
            for name in ("XFERKIT_HTX_ACCESS_KEY", "XFERKIT_HTX_SECRET")
        )
        return cls(key, secret, base_url=url)

    # -- validation ------------------------------------------------------------------------

    def validate(
        self,
        *,
        currency: object,
        amount: object,
        from_account: object,
        to_account: object,
        symbol: object = None,
        margin_account: object = None,
    ) -> TransferSpec:
        """Check HTX's rules and return the canonical spec; raises ``InvalidRequestError``."""
        source = resolve_account(from_account, "from_account", ACCOUNTS, "HTX")
        target = resolve_account(to_account, "to_account", ACCOUNTS, "HTX")
        if source == target:
            raise InvalidRequestError(f"from_account and to_account are both {source!r}")
        if (source, target) not in SUPPORTED_PAIRS:
            raise InvalidRequestError(
                f"HTX does not transfer from {source!r} to {target!r}; "
                "go through the spot account (two transfers)"
            )
        if symbol is not None:
            raise InvalidRequestError("symbol is an XT setting; HTX takes margin_account")
        margin: str | None = None
        if "usdt_futures" in (source, target):
            margin = _margin_account(margin_account)
        elif margin_account is not None:
            raise InvalidRequestError(
                "margin_account applies only to USDT-margined (linear-swap) transfers on HTX"
            )
        value = normalize_amount(amount)
        decimals = -int(value.as_tuple().exponent)
        if decimals > MAX_DECIMALS:
            raise InvalidRequestError(
                f"HTX takes at most {MAX_DECIMALS} decimal places; {amount_text(value)} has "
                f"{decimals}"
            )
        return TransferSpec(
            venue=self.name,
            currency=normalize_currency(currency),
            amount=value,
            from_account=source,
            to_account=target,
            margin_account=margin,
        )

    # -- the request -----------------------------------------------------------------------

    @property
    def account(self) -> str:
        """The non-secret fingerprint of the access key: whose journal rows are whose."""
        return account_fingerprint(self.name, self.access_key)

    def idempotency_token(self, key: str, params_fingerprint: str) -> str | None:
        """HTX has no server-side idempotency key: always ``None``."""
        del key, params_fingerprint
        return None

    def legacy_token(self, key: str) -> str | None:
        """HTX has no token: nothing proves whose a journal row from xferkit 0.1 is."""
        del key
        return None

    def transfer_body(self, spec: TransferSpec, token: str | None) -> str:
        """Serialise the JSON body once; the amount is written as an exact decimal literal."""
        fields = {
            "from": ACCOUNTS[spec.from_account],
            "to": ACCOUNTS[spec.to_account],
            "currency": spec.currency,
            "amount": "__AMOUNT__",
        }
        if spec.margin_account:
            fields["margin-account"] = spec.margin_account
        body = compact_json(fields)
        # A JSON number, written from the Decimal's own digits: never through a float.
        return body.replace('"__AMOUNT__"', amount_text(spec.amount))

    def transfer_request(self, body: str, timestamp_ms: int) -> HttpRequest:
        """Sign one attempt (the auth parameters; HTX does not sign the body)."""
        return self._signed("POST", TRANSFER_PATH, timestamp_ms, body=body)

    def accounts_request(self, timestamp_ms: int) -> HttpRequest:
        """The signed request listing the user's accounts (to find the spot account id)."""
        return self._signed("GET", ACCOUNTS_PATH, timestamp_ms)

    def ledger_request(
        self,
        *,
        account_id: str,
        currency: str,
        start_ms: int,
        end_ms: int,
        from_id: str | None,
        timestamp_ms: int,
    ) -> HttpRequest:
        """The signed request for one page of the spot account's transfer ledger."""
        query = {
            "accountId": account_id,
            "currency": currency,
            "transactTypes": "transfer",
            "startTime": str(start_ms),
            "endTime": str(end_ms),
            "limit": str(LEDGER_PAGE_SIZE),
        }
        if from_id is not None:
            query["fromId"] = from_id
        return self._signed("GET", LEDGER_PATH, timestamp_ms, query=query)

    def _signed(
        self,
        method: str,
        path: str,
        timestamp_ms: int,
        *,
        query: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> HttpRequest:
        params = {
            "AccessKeyId": self.access_key,
            "SignatureMethod": "HmacSHA256",
            "SignatureVersion": "2",
            "Timestamp": format_timestamp(timestamp_ms),
        }
        if method == "GET" and query:
            params.update(query)
        host = _signed_host(self.base_url)
        signature = sign(secret=self.secret, method=method, host=host, path=path, params=params)
        url = (
            f"{self.base_url}{path}?{canonical_query(params)}&Signature={quote(signature, safe='')}"
        )
        headers = {"content-type": "application/json"} if body is not None else {}
        return HttpRequest(
            method=method,
            url=url,
            headers=headers,
            body=body.encode() if body is not None else None,
        )

    # -- answers ---------------------------------------------------------------------------

    def classify_transfer(self, response: HttpResponse) -> Outcome:
        """Sort an answer to the transfer POST per the HTX table (shared/venues/htx.md)."""
        if response.status == 403 and not _has_envelope(response):
            # HTX lists a bare 403 (its gateway forbidding the request) as not processed.
            error = PermissionDeniedError(
                "HTTP 403 Forbidden", venue=self.name, code="403", http_status=403
            )
            return NotProcessed(error=error)
        envelope = http_triage(response, self.name)
        if not isinstance(envelope, dict):
            return envelope
        status = response.status
        if "success" in envelope or "code" in envelope:
            success = str(envelope.get("success")).lower() == "true"
            code = str(envelope.get("code"))
            data = envelope.get("data")
            if success:
                is_id = isinstance(data, str | int) and not isinstance(data, bool)
                if code == "200" and is_id and str(data).strip():
                    return Succeeded(str(data))
                return Ambiguous(reason="success answer without a transfer id")
            message = str(envelope.get("message") or code)
            return classify_code(code, message, http_status=status)
        if envelope.get("status") == "error":
            code = str(envelope.get("err-code") or status)
            message = str(envelope.get("err-msg") or code)
            return classify_code(code, message, http_status=status)
        return Ambiguous(reason=f"HTTP {status} with an unrecognised envelope")

    def quota_pause(self, response: HttpResponse) -> float | None:
        """Hold back until the quota window ends when ``X-HB-RateLimit-Requests-Remain`` is 0.

        ``...-Expire`` is read as a Unix time in ms when it looks like one, else as ms from now
        (HTX does not say which); the pause is capped at a minute.
        """
        if response.headers.get("x-hb-ratelimit-requests-remain", "").strip() != "0":
            return None
        try:
            expire = float(response.headers.get("x-hb-ratelimit-requests-expire", "1000"))
        except ValueError:
            expire = 1000.0
        if expire > 1e11:  # an epoch in ms: relative to the answer's own Date is unknown here
            expire = max(0.0, expire - time.time() * 1000)
        return min(max(expire / 1000, 0.0), 60.0)

    def time_request(self) -> HttpRequest:
        """The unsigned server-time request."""
        return HttpRequest(method="GET", url=self.base_url + TIME_PATH)

    def parse_server_time(self, response: HttpResponse) -> int:
        """Server time in Unix ms from ``/v1/common/timestamp``; ``ValueError`` if malformed."""
        envelope = response.json()
        if envelope.get("status") != "ok":
            raise ValueError(f"time endpoint answered {envelope!r}")
        return int(envelope["data"])

    # -- reconciliation --------------------------------------------------------------------

    def can_reconcile(self, spec: TransferSpec) -> bool:
        """Whether the spot ledger shows this transfer (it must touch the spot account)."""
        return "spot" in (spec.from_account, spec.to_account)

    def parse_spot_account_id(self, response: HttpResponse) -> str:
        """The spot account's id from ``/v1/account/accounts``; ``ValueError`` if absent."""
        envelope = response.json()
        if response.status != 200 or not isinstance(envelope, dict):
            raise ValueError(f"accounts endpoint answered HTTP {response.status}")
        if envelope.get("status") != "ok":
            raise ValueError(f"accounts endpoint answered {envelope!r}")
        accounts = envelope.get("data")
        for account in accounts if isinstance(accounts, list) else []:
            if isinstance(account, dict) and account.get("type") == "spot":
                if account.get("id") is None:
                    raise ValueError("the spot account has no id")
                return str(account["id"])
        raise ValueError("no spot account in the accounts list")

    def parse_ledger(self, response: HttpResponse) -> LedgerPage:
        """One ledger page; ``ValueError`` if the answer is not a successful page."""
        envelope = response.json()
        if (
            response.status != 200
            or not isinstance(envelope, dict)
            or str(envelope.get("code")) != "200"
        ):
            raise ValueError(f"ledger endpoint answered HTTP {response.status}: {envelope!r}")
        items = envelope.get("data") or []
        if not isinstance(items, list):
            raise ValueError(f"ledger data is not a list: {items!r}")  # noqa: TRY004 - bad data
        rows = [_ledger_row(item) for item in items]
        next_id = envelope.get("nextId")
        return LedgerPage(rows=rows, next_id=str(next_id) if next_id is not None else None)

    def ledger_matches(self, row: LedgerRow, spec: TransferSpec) -> bool | None:
        """Whether ``row`` can be this transfer: currency, |amount|, direction, type family.

        ``None`` when it cannot be told: the row looks right but carries no transfer type, or
        one xferkit does not know (HTX's list is open). Counting such a row either way could
        be wrong (a false success, or a second send).
        """
        if row.currency != spec.currency or abs(row.amount) != spec.amount:
            return False
        if (row.amount < 0) != (spec.from_account == "spot"):
            return False
        kind = row.transfer_type
        if kind is None:
            return None
        if kind in TRANSFER_TYPES.get((spec.from_account, spec.to_account), frozenset()):
            return True
        if (
            kind in _KNOWN_TRANSFER_TYPES
            or kind in _OTHER_TRANSFER_TYPES
            or kind.startswith(_OTHER_TRANSFER_PREFIXES)
        ):
            return False
        return None


def _ledger_row(item: object) -> LedgerRow:
    if not isinstance(item, dict):
        raise ValueError(f"malformed ledger row {item!r}")  # noqa: TRY004 - bad venue data
    try:
        amount = Decimal(str(item["transactAmt"]))
        row = LedgerRow(
            transact_id=str(item["transactId"]),
            currency=str(item["currency"]).lower(),
            amount=amount,
            transfer_type=item.get("transferType"),
            transact_time_ms=int(item["transactTime"]),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise ValueError(f"malformed ledger row {item!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"ledger row with a non-finite amount {item!r}")
    return row


def _has_envelope(response: HttpResponse) -> bool:
    """Whether the answer is a JSON object (then its code, not its status, classifies it)."""
    try:
        return isinstance(response.json(), dict)
    except ValueError:
        return False


def _signed_host(base_url: str) -> str:
    """The host as HTX sees it: with the port only when it is not the scheme's default
    (httpx, like any client, leaves ``:443`` and ``:80`` out of the Host header)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if parts.port is not None and parts.port != default:
        host = f"{host}:{parts.port}"
    return host


def _margin_account(value: object) -> str:
    if value is None:
        return "USDT"  # the cross (or unified) margin account
    if not isinstance(value, str) or not value.isascii():
        raise InvalidRequestError("margin_account must be 'USDT' (cross) or a pair like 'BTC-USDT'")
    margin = value.strip().upper()
    if not _MARGIN_ACCOUNT.fullmatch(margin):
        raise InvalidRequestError(
            f"margin_account {value!r} must be 'USDT' (cross) or a pair like 'BTC-USDT' (isolated)"
        )
    return margin
