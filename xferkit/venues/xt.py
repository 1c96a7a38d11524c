"""XT.com spot API v4: ``POST /v4/balance/transfer`` (see shared/venues/xt.md).

XT de-duplicates on ``bizId``: xferkit derives it from (api key, idempotency key), so an
ambiguous attempt is settled by resending the same body, and a duplicate-bizId answer after such
an attempt means the earlier one executed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Mapping

import attrs

from .._exceptions import (
    AuthenticationError,
    InsufficientBalanceError,
    InvalidRequestError,
    PermissionDeniedError,
    TransferRejectedError,
    VenueError,
)
from .._http import HttpRequest, HttpResponse
from .._outcomes import Ambiguous, Duplicate, NotProcessed, Outcome, Rejected, Succeeded
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
    TransferSpec,
    account_fingerprint,
    compact_json,
    env_credential,
    http_triage,
    resolve_account,
    strip_base_url,
)

__all__ = ["DEFAULT_XT_BASE_URL", "XT", "classify_code", "sign"]

DEFAULT_XT_BASE_URL = "https://sapi.xt.com"
TRANSFER_PATH = "/v4/balance/transfer"
TIME_PATH = "/v4/public/time"

# Unified account name -> XT's own name. XT's names are accepted too, in any case.
ACCOUNTS: Mapping[str, str] = {
    "spot": "SPOT",
    "margin": "LEVER",
    "finance": "FINANCE",
    "usdt_futures": "FUTURES_U",
    "coin_futures": "FUTURES_C",
}
_SYMBOL = re.compile(r"[a-z0-9]+_[a-z0-9]+")

# Fixed namespaces so bizIds stay the same across versions, processes and lost journals.
# The first named (api key, key) alone (xferkit 0.1); stored intents keep such bizIds.
_LEGACY_BIZID_NAMESPACE = uuid.UUID("5b7f1c3e-8d2a-4e6b-9f10-0c1d2e3f4a5b")
_BIZID_NAMESPACE = uuid.UUID("0b6f3d2a-7c41-5e98-a1b2-3c4d5e6f7a8b")


def sign(
    *,
    api_key: str,
    secret: str,
    method: str,
    path: str,
    timestamp_ms: int,
    recv_window_ms: int,
    query: Mapping[str, str] | None = None,
    body: str | None = None,
) -> str:
    """Return XT's HMAC-SHA256 signature (lowercase hex) of one request.

    The string signed is the sorted ``validate-*`` header pairs, then ``#METHOD#path``, then
    ``#query`` (pairs sorted by key, values unencoded) and ``#body`` when present.
    """
    text = (
        f"validate-algorithms=HmacSHA256&validate-appkey={api_key}"
        f"&validate-recvwindow={recv_window_ms}&validate-timestamp={timestamp_ms}"
        f"#{method}#{path}"
    )
    if query:
        text += "#" + "&".join(f"{k}={query[k]}" for k in sorted(query))
    if body:
        text += "#" + body
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _codes(prefix: str, first: int, last: int, width: int = 3) -> set[str]:
    return {f"{prefix}_{n:0{width}d}" for n in range(first, last + 1)}


_AMBIGUOUS_CODES = {"TRANSFER_007", "COMMON_002", "COMMON_003"}
_DUPLICATE_CODES = {"FUND_001", "TRANSFER_001"}
_AUTH_CODES = _codes("AUTH", 1, 7) | {"AUTH_101", "AUTH_102", "AUTH_103"}
_PERMISSION_CODES = {"AUTH_104", "AUTH_106"}
_BALANCE_CODES = {"FUND_002", "TRANSFER_002"}
_REJECTED_CODES = (
    {"FUND_003", "FUND_004", "FUND_005", "FUND_044"}
    | _codes("FUND", 14, 22)
    | _codes("TRANSFER", 3, 6)
    | _codes("TRANSFER", 8, 12)
    | {"SYMBOL_001", "CURRENCY_001", "COMMON_001", "FAILURE"}
    | _codes("GATEWAY", 1, 4, width=4)
)
_CLOCK_CODE = "AUTH_105"


def classify_code(code: str, message: str, *, http_status: int | None = None) -> Outcome:
    """Sort an XT error code (``mc``) into its outcome class per the venue table.

    A code missing from the table is treated as ambiguous: resending the same bizId is always
    safe on XT, whereas calling an unknown answer a refusal could hide an executed transfer.
    """
    venue = XT.name

    def error(cls: type[VenueError]) -> VenueError:
        return cls(message, venue=venue, code=code, http_status=http_status)

    if code in _DUPLICATE_CODES:
        return Duplicate(error(TransferRejectedError))
    if code == _CLOCK_CODE:
        return NotProcessed(error=error(AuthenticationError), resync_clock=True)
    # The gateway checks key, signature, IP and permission before the transfer logic sees
    # the request: such a refusal never registers the bizId.
    if code in _AUTH_CODES:
        return Rejected(error(AuthenticationError), before_processing=True)
    if code in _PERMISSION_CODES:
        return Rejected(error(PermissionDeniedError), before_processing=True)
    if code in _BALANCE_CODES:
        return Rejected(error(InsufficientBalanceError))
    if code in _REJECTED_CODES:
        return Rejected(error(TransferRejectedError))
    if code in _AMBIGUOUS_CODES:
        return Ambiguous(reason=f"venue answered {code}")
    return Ambiguous(reason=f"unrecognised venue code {code}")


def _check_recv_window(_: object, __: object, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 2000 <= value <= 60000:
        raise InvalidRequestError(f"recv_window_ms must be 2000..60000, not {value}")


def _check_rate(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidRequestError(f"rate_limit must be a positive number, not {value}")


@attrs.frozen
class XT:
    """Credentials and settings for XT.com; pass it to `xferkit.Client`.

    Attributes:
        api_key: the API key (sent as ``validate-appkey``).
        secret: the secret key; used only to sign, never shown in repr, logs or errors.
        base_url: the API host, for a proxy or the simulated venue.
        recv_window_ms: how long a signed request stays valid (2000..60000).
        rate_limit: client-side ceiling in transfer requests per second.
    """

    name = "xt"
    ambiguity_policy = AmbiguityPolicy.RESEND

    api_key: str = attrs.field(validator=credential_field)
    secret: str = attrs.field(repr=False, validator=credential_field)
    base_url: str = attrs.field(
        default=DEFAULT_XT_BASE_URL,
        kw_only=True,
        converter=strip_base_url,
        validator=base_url_field,
    )
    recv_window_ms: int = attrs.field(default=5000, kw_only=True, validator=_check_recv_window)
    rate_limit: float = attrs.field(default=10.0, kw_only=True, validator=_check_rate)

    @classmethod
    def from_env(cls, *, base_url: str | None = None) -> XT:
        """Read ``XFERKIT_XT_API_KEY`` and ``XFERKIT_XT_SECRET`` (and ``XFERKIT_XT_BASE_URL``)."""
        url = base_url or os.environ.get("XFERKIT_XT_BASE_URL") or DEFAULT_XT_BASE_URL
        # Checked here too, so a bad value is named by its variable, not by the field.
        key, secret = (
            check_credential(env_credential(name), name)
            for name in ("XFERKIT_XT_API_KEY", "XFERKIT_XT_SECRET")
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
        """Check XT's rules and return the canonical spec; raises ``InvalidRequestError``."""
        source = resolve_account(from_account, "from_account", ACCOUNTS, "XT")
        target = resolve_account(to_account, "to_account", ACCOUNTS, "XT")
        if source == target:
            raise InvalidRequestError(f"from_account and to_account are both {source!r}")
        if margin_account is not None:
            raise InvalidRequestError("margin_account is an HTX setting; XT takes symbol")
        pair: str | None = None
        if "margin" in (source, target):
            if (
                not isinstance(symbol, str)
                or not symbol.isascii()
                or not _SYMBOL.fullmatch(symbol.strip().lower())
            ):
                raise InvalidRequestError(
                    "a margin (LEVER) transfer on XT needs symbol, e.g. symbol='btc_usdt'"
                )
            pair = symbol.strip().lower()
        elif symbol is not None:
            raise InvalidRequestError("symbol applies only to margin (LEVER) transfers on XT")
        return TransferSpec(
            venue=self.name,
            currency=normalize_currency(currency),
            amount=normalize_amount(amount),
            from_account=source,
            to_account=target,
            symbol=pair,
        )

    # -- the request -----------------------------------------------------------------------

    @property
    def account(self) -> str:
        """The non-secret fingerprint of the API key: whose journal rows are whose."""
        return account_fingerprint(self.name, self.api_key)

    def idempotency_token(self, key: str, params_fingerprint: str) -> str:
        """Derive ``bizId`` from (account, key, canonical parameters).

        So XT's duplicate answer can only mean "this very transfer executed", even for a
        bizId this journal never sent (a lost journal); a key reused with other parameters
        after its row is gone is another bizId, another transfer.
        """
        name = f"{self.account}\x00{key}\x00{params_fingerprint}"
        return str(uuid.uuid5(_BIZID_NAMESPACE, name))

    def biz_id(
        self,
        key: str,
        *,
        currency: object,
        amount: object,
        from_account: object,
        to_account: object,
        symbol: object = None,
    ) -> str:
        """The ``bizId`` xferkit sends for this transfer under ``key``: what to search XT's
        records for, or to count a fake venue's executions by."""
        spec = self.validate(
            currency=currency,
            amount=amount,
            from_account=from_account,
            to_account=to_account,
            symbol=symbol,
        )
        return self.idempotency_token(key, spec.fingerprint())

    def legacy_token(self, key: str) -> str:
        """The bizId xferkit 0.1 derived from (api key, key): it proves that a journal
        row from then (`xferkit.journal.LEGACY_ACCOUNT`) is this API key's."""
        return str(uuid.uuid5(_LEGACY_BIZID_NAMESPACE, f"{self.api_key}\x00{key}"))

    def transfer_body(self, spec: TransferSpec, token: str | None) -> str:
        """Serialise the JSON body once, in XT's field order; resends reuse these bytes."""
        body: dict[str, str] = {
            "bizId": token or "",
            "from": ACCOUNTS[spec.from_account],
            "to": ACCOUNTS[spec.to_account],
            "currency": spec.currency,
        }
        if spec.symbol:
            body["symbol"] = spec.symbol
        body["amount"] = amount_text(spec.amount)
        return compact_json(body)

    def transfer_request(self, body: str, timestamp_ms: int) -> HttpRequest:
        """Sign one attempt of ``body`` at ``timestamp_ms``."""
        return self._signed("POST", TRANSFER_PATH, timestamp_ms, body=body)

    def _signed(
        self,
        method: str,
        path: str,
        timestamp_ms: int,
        *,
        query: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> HttpRequest:
        signature = sign(
            api_key=self.api_key,
            secret=self.secret,
            method=method,
            path=path,
            timestamp_ms=timestamp_ms,
            recv_window_ms=self.recv_window_ms,
            query=query,
            body=body,
        )
        headers = {
            "validate-algorithms": "HmacSHA256",
            "validate-appkey": self.api_key,
            "validate-recvwindow": str(self.recv_window_ms),
            "validate-timestamp": str(timestamp_ms),
            "validate-signature": signature,
            "content-type": "application/json",
        }
        url = self.base_url + path
        if query:
            url += "?" + "&".join(f"{k}={query[k]}" for k in sorted(query))
        return HttpRequest(
            method=method,
            url=url,
            headers=headers,
            body=body.encode() if body is not None else None,
        )

    # -- answers ---------------------------------------------------------------------------

    def classify_transfer(self, response: HttpResponse) -> Outcome:
        """Sort an answer to the transfer POST per the XT table (shared/venues/xt.md)."""
        envelope = http_triage(response, self.name)
        if not isinstance(envelope, dict):
            return envelope
        status = response.status
        rc, code = str(envelope.get("rc")), envelope.get("mc")
        if rc == "0" and code == "SUCCESS" and status == 200:
            result = envelope.get("result")
            if result is None or isinstance(result, dict | list):
                # Success without an id: resending the same bizId settles it either way.
                return Ambiguous(reason="success answer without a transfer id")
            return Succeeded(str(result))
        if not isinstance(code, str) or not code:
            return Ambiguous(reason=f"HTTP {status} without an error code")
        return classify_code(code, _message(envelope, code), http_status=status)

    def quota_pause(self, response: HttpResponse) -> float | None:
        """XT documents no quota headers: its 429s drive the limiter instead."""
        del response
        return None

    def time_request(self) -> HttpRequest:
        """The unsigned server-time request."""
        return HttpRequest(method="GET", url=self.base_url + TIME_PATH)

    def parse_server_time(self, response: HttpResponse) -> int:
        """Server time in Unix ms from ``/v4/public/time``; ``ValueError`` if malformed."""
        envelope = response.json()
        return int(envelope["result"]["serverTime"])


# What XT's codes mean (xt.md): XT's own ``ma`` holds only arguments, usually none, so the
# error message says what the code means and adds the arguments when there are any.
_MEANINGS: Mapping[str, str] = {
    "AUTH_101": "api key does not exist",
    "AUTH_102": "api key is not active",
    "AUTH_103": "signature error",
    "AUTH_104": "IP not whitelisted",
    "AUTH_105": "timestamp outside the receive window",
    "AUTH_106": "api key lacks permission",
    "FUND_001": "duplicate request",
    "FUND_002": "insufficient balance",
    "FUND_015": "from and to must differ",
    "FUND_016": "a LEVER transfer needs symbol",
    "FUND_017": "invalid parameter",
    "SYMBOL_001": "symbol does not exist",
    "CURRENCY_001": "currency does not exist",
    "TRANSFER_001": "duplicate request",
    "TRANSFER_002": "insufficient balance",
    "TRANSFER_007": "request timed out; the transfer may have executed",
}


def _message(envelope: Mapping[str, object], code: str) -> str:
    messages = envelope.get("ma")
    arguments = messages if isinstance(messages, list) else []
    meaning = _MEANINGS.get(code)
    parts = [meaning] if meaning else []
    parts.extend(str(m) for m in arguments)
    return "; ".join(parts) or code
