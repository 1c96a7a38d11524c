"""What the engine needs from a venue module, and the validated transfer it works on.

Venue modules are thin (design.md §2, rule 3): request shape, signing, response parsing, the
error-code table and the reconciliation query. Retry, journal and lease logic live in the engine.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import attrs

from .._exceptions import InvalidRequestError, RateLimitError
from .._http import HttpRequest, HttpResponse
from .._outcomes import Ambiguous, NotProcessed, Outcome
from .._validation import amount_text

__all__ = [
    "AmbiguityPolicy",
    "LedgerPage",
    "LedgerRow",
    "LedgerVenue",
    "TransferSpec",
    "Venue",
    "account_fingerprint",
    "compact_json",
    "env_credential",
    "fingerprint",
    "http_triage",
    "resolve_account",
    "strip_base_url",
]


class AmbiguityPolicy(enum.Enum):
    """What the engine may do after an attempt that may have executed."""

    RESEND = "resend"
    """The venue de-duplicates on a key we send (XT ``bizId``): resend the same body."""
    RECONCILE = "reconcile"
    """No server-side key (HTX): never blindly resend; look for the transfer first."""


def http_triage(response: HttpResponse, venue: str) -> dict[str, Any] | Outcome:
    """What both venues read the same way before their envelopes: 429, 5xx and non-JSON.

    Returns the decoded JSON object, or the outcome when the answer never got that far.
    """
    status = response.status
    if status == 429:
        error = RateLimitError("rate limited", venue=venue, http_status=status)
        return NotProcessed(error=error, retry_after=response.retry_after())
    if status >= 500:
        return Ambiguous(reason=f"HTTP {status}", retry_after=response.retry_after())
    try:
        envelope = response.json()
    except ValueError:
        return Ambiguous(reason=f"HTTP {status} with a body that is not JSON")
    if not isinstance(envelope, dict):
        return Ambiguous(reason=f"HTTP {status} with an unexpected JSON body")
    return envelope


def resolve_account(value: object, field: str, accounts: Mapping[str, str], venue: str) -> str:
    """Turn an account name, unified or the venue's own (any case), into the unified name.

    ASCII only: case-folding would otherwise turn look-alikes ("\u017fpot") into real names.
    """
    if not isinstance(value, str) or not value.strip() or not value.isascii():
        raise InvalidRequestError(f"{field} must be an account name such as 'spot'")
    name = value.strip().lower()
    if name in accounts:
        return name
    for unified, native in accounts.items():
        if native.lower() == name:
            return unified
    choices = ", ".join(dict.fromkeys([*accounts, *accounts.values()]))
    raise InvalidRequestError(f"{field} {value!r} is not an {venue} account; use one of {choices}")


def env_credential(name: str) -> str:
    """Read a credential from the environment, naming the variable if it is missing."""
    value = os.environ.get(name)
    if not value:
        raise InvalidRequestError(f"environment variable {name} is not set")
    return value


def strip_base_url(url: object) -> str:
    """Normalise a base URL: no trailing slash, so paths join cleanly."""
    return str(url).rstrip("/")


# json.dumps with options builds a new encoder per call; the venues share these.
compact_json = json.JSONEncoder(separators=(",", ":")).encode
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def fingerprint(canonical_json: str) -> str:
    """`TransferSpec.fingerprint` of the spec whose `TransferSpec.canonical_json` is given."""
    return hashlib.sha256(canonical_json.encode()).hexdigest()


def account_fingerprint(venue: str, api_key: str) -> str:
    """A non-secret name for the account an API key acts for: what a journal row belongs to.

    A hash, so neither the journal nor `journal ls` holds the key; 20 hex digits (80 bits)
    keep two keys of one user apart with room to spare.
    """
    return hashlib.sha256(f"xferkit-account\x00{venue}\x00{api_key}".encode()).hexdigest()[:20]


@attrs.frozen(kw_only=True)
class TransferSpec:
    """A validated transfer in canonical form: what the fingerprint and the journal hold.

    Accounts are the unified names (``spot``, ``usdt_futures``...), so ``"spot"`` and ``"SPOT"``
    are the same request; venue modules map them to their native names when building the body.
    """

    venue: str
    currency: str
    amount: Decimal
    from_account: str
    to_account: str
    symbol: str | None = None
    margin_account: str | None = None

    def canonical_json(self) -> str:
        """Serialise the parameters deterministically (sorted keys, amount as plain text)."""
        fields = attrs.asdict(self, recurse=False)
        fields["amount"] = amount_text(self.amount)
        return _canonical_json(fields)

    def fingerprint(self) -> str:
        """Hash of the canonical parameters: equal iff the same transfer was asked for."""
        return fingerprint(self.canonical_json())

    def same_movement(self, other: TransferSpec) -> bool:
        """Whether ``other`` moves the same amount of the same currency between the same
        accounts: two such transfers look alike in a ledger."""
        return (self.from_account, self.to_account, self.currency, self.amount) == (
            other.from_account,
            other.to_account,
            other.currency,
            other.amount,
        )

    @classmethod
    def from_canonical_json(cls, text: str) -> TransferSpec:
        """Rebuild a spec from `canonical_json` (used when resuming from the journal)."""
        fields = json.loads(text)
        fields["amount"] = Decimal(fields["amount"])
        return cls(**fields)


@runtime_checkable
class Venue(Protocol):
    """A venue module's surface, as the engine uses it."""

    @property
    def name(self) -> str:
        """Short lowercase name callers pass to ``transfer()`` (``"xt"``)."""

    @property
    def base_url(self) -> str:
        """Scheme, host and optional port of the venue's API."""

    @property
    def rate_limit(self) -> float:
        """Client-side ceiling in transfer requests per second."""

    @property
    def ambiguity_policy(self) -> AmbiguityPolicy:
        """How an ambiguous attempt is settled on this venue."""

    def validate(
        self,
        *,
        currency: object,
        amount: object,
        from_account: object,
        to_account: object,
        symbol: object,
        margin_account: object,
    ) -> TransferSpec:
        """Check the venue-specific rules and return the canonical spec (no I/O)."""

    @property
    def account(self) -> str:
        """The non-secret fingerprint of this API key (`account_fingerprint`)."""

    def idempotency_token(self, key: str, params_fingerprint: str) -> str | None:
        """The server-side de-duplication key for this transfer (account, key, parameters),
        if the venue has one."""

    def legacy_token(self, key: str) -> str | None:
        """The token xferkit 0.1 derived for ``key`` with this API key, if the venue has one:
        it proves a journal row from then (account unknown) is this API key's."""

    def transfer_body(self, spec: TransferSpec, token: str | None) -> str:
        """Serialise the transfer body once; every attempt sends exactly these bytes."""

    def transfer_request(self, body: str, timestamp_ms: int) -> HttpRequest:
        """Build and sign one attempt of the transfer with a fresh timestamp."""

    def classify_transfer(self, response: HttpResponse) -> Outcome:
        """Sort the venue's answer into an outcome class per the venue's code table."""

    def quota_pause(self, response: HttpResponse) -> float | None:
        """Seconds to hold all requests back when the venue says its quota is spent."""

    def time_request(self) -> HttpRequest:
        """The unsigned request for the venue's server time."""

    def parse_server_time(self, response: HttpResponse) -> int:
        """Server time in Unix milliseconds from the answer to `time_request`."""


@attrs.frozen(kw_only=True)
class LedgerRow:
    """One row of an account ledger, as reconciliation needs it."""

    transact_id: str
    currency: str
    amount: Decimal  # signed: positive into the ledger's account, negative out of it
    transfer_type: str | None
    transact_time_ms: int


@attrs.frozen(kw_only=True)
class LedgerPage:
    """One page of ledger rows and the id to continue from (``None`` on the last page)."""

    rows: Sequence[LedgerRow]
    next_id: str | None


@runtime_checkable
class LedgerVenue(Venue, Protocol):
    """A venue whose ambiguous transfers are settled through an account ledger."""

    @property
    def settle_seconds(self) -> float:
        """How long after a send the ledger is trusted to show the transfer."""

    @property
    def ledger_margin_seconds(self) -> float:
        """Clock margin around the first send when searching the ledger."""

    def can_reconcile(self, spec: TransferSpec) -> bool:
        """Whether the ledger can show this transfer at all."""

    def accounts_request(self, timestamp_ms: int) -> HttpRequest:
        """The signed request listing accounts (to find the ledger's account id)."""

    def parse_spot_account_id(self, response: HttpResponse) -> str:
        """The ledger account's id; ``ValueError`` if absent."""

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
        """One signed ledger page request."""

    def parse_ledger(self, response: HttpResponse) -> LedgerPage:
        """One ledger page; ``ValueError`` if the answer is not a page."""

    def ledger_matches(self, row: LedgerRow, spec: TransferSpec) -> bool | None:
        """Whether ``row`` can be this transfer; ``None`` when that cannot be told."""
