"""The demo: a faulted rebalancing batch across XT and HTX, through the real engine, verified.

Both simulated venues are served on loopback with faults on; ``Client.transfer_many`` runs the
batch through a SQLite journal in a temporary directory; ``resume()`` settles what the outage
left open; the whole batch is submitted again and must move nothing. The summary then comes
from what the fakes really executed (their audits), not from what the client believes.

Kept apart from the command line so tests can run it and compare its summary with the audits.
"""

from __future__ import annotations

import collections
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

import attrs

from ._client import Client
from ._exceptions import TransferOutcomeUnknownError, VenueError, XferError
from ._models import Receipt, TransferRequest, TransferStatus
from ._retry import RetryPolicy
from .journal import Intent
from .testing import FakeHTX, FakeXT, FaultPlan, serve
from .venues.htx import HTX, MIN_LEDGER_MARGIN_SECONDS, MIN_SETTLE_SECONDS
from .venues.xt import XT

__all__ = [
    "DEMO_HTX_ACCESS_KEY",
    "DEMO_HTX_SECRET",
    "DEMO_XT_API_KEY",
    "DEMO_XT_SECRET",
    "MAX_DEMO_TRANSFERS",
    "DemoSummary",
    "DemoVenues",
    "VenueSummary",
    "demo_requests",
    "run_demo",
]

# The simulated venues' published demo credentials (also what `xferkit sim` serves).
DEMO_XT_API_KEY = "demo-xt-key"
DEMO_XT_SECRET = "demo-xt-secret"  # noqa: S105 - a published demo credential of a fake venue
DEMO_HTX_ACCESS_KEY = "demo-htx-key"
DEMO_HTX_SECRET = "demo-htx-secret"  # noqa: S105 - a published demo credential of a fake venue

MAX_DEMO_TRANSFERS = 999_999
"""HTX amounts end in the transfer's six-digit number, which makes each one unique."""

_XT_ACCOUNTS = ("spot", "usdt_futures", "coin_futures", "finance")
# Every HTX transfer has spot on one side: the spot ledger shows it, so an ambiguous answer
# can always be reconciled (a transfer between two contract accounts never could be).
_HTX_ACCOUNTS = ("usdt_futures", "coin_futures", "futures", "otc")
_REFUSED_SHARE = 0.03  # transfers that ask for more than the account holds: refused
_TOO_MUCH = 9_999_999  # the fakes start every account with 1,000,000 usdt
_VENUES = ("xt", "htx")


@attrs.frozen(kw_only=True)
class DemoVenues:
    """The two fake venues of a demo run and their fault plans (one each, to count per venue)."""

    xt: FakeXT
    htx: FakeHTX
    xt_faults: FaultPlan
    htx_faults: FaultPlan

    @classmethod
    def create(cls, *, fault_rate: float, seed: int) -> DemoVenues:
        """Fakes with the demo credentials, each with its own seeded fault plan."""
        xt_faults = FaultPlan(rate=fault_rate, seed=seed)
        htx_faults = FaultPlan(rate=fault_rate, seed=seed + 1)
        return cls(
            xt=FakeXT(api_key=DEMO_XT_API_KEY, secret=DEMO_XT_SECRET, faults=xt_faults),
            htx=FakeHTX(access_key=DEMO_HTX_ACCESS_KEY, secret=DEMO_HTX_SECRET, faults=htx_faults),
            xt_faults=xt_faults,
            htx_faults=htx_faults,
        )

    def faults(self, venue: str) -> FaultPlan:
        """The fault plan of ``venue``."""
        return self.xt_faults if venue == "xt" else self.htx_faults


@attrs.frozen(kw_only=True)
class VenueSummary:
    """What the demo asked of one venue, and what that venue's audit says really executed.

    Attributes:
        venue: ``"xt"`` or ``"htx"``.
        transfers: transfers asked for.
        succeeded: ``SUCCEEDED`` in the end.
        failed: refused by the venue (nothing moved), in the end.
        refused_by_code: ``failed`` by the venue's code (or the error class without one).
        unresolved: neither in the end (still ``UNKNOWN``).
        left_for_operator: of those, the ones a venue refused after an earlier attempt may
            have executed (an oversized XT transfer whose first answer was lost: the balance
            refusal of the resend says nothing about it). Software cannot settle them; a
            person does (``xferkit journal settle``). Each moved at most once.
        unknown_after_batch: ``UNKNOWN`` when the faulted batch ended.
        settled_by_resume: of those, settled by ``resume()`` once the faults stopped.
        attempts: requests sent, over every call (from the journal).
        retries: requests beyond each transfer's first.
        faults: faults injected, by kind; the engine survived every one.
        reconciled: HTX transfers settled by finding them in the ledger (intents with a
            ledger row); ``None`` on XT, which settles by resending under the same ``bizId``.
        executed: transfers the venue's audit shows.
        executed_twice: transfers the audit shows more than once.
        succeeded_not_executed: successes the audit does not show exactly once.
        failed_but_executed: refusals the audit shows anyway.
        replayed_on_resubmit: receipts of the second submission that came from the journal.
    """

    venue: str
    transfers: int
    succeeded: int
    failed: int
    refused_by_code: Mapping[str, int]
    unresolved: int
    left_for_operator: int
    unknown_after_batch: int
    settled_by_resume: int
    attempts: int
    retries: int
    faults: Mapping[str, int]
    reconciled: int | None
    executed: int
    executed_twice: int
    succeeded_not_executed: int
    failed_but_executed: int
    replayed_on_resubmit: int

    @property
    def exactly_once(self) -> bool:
        """Each success executed once, each refusal never, no extras; every transfer settled
        but those only a person can settle, and each of those moved at most once."""
        return (
            self.unresolved == self.left_for_operator
            and self.executed_twice == 0
            and self.succeeded_not_executed == 0
            and self.failed_but_executed == 0
            and self.succeeded <= self.executed <= self.succeeded + self.left_for_operator
        )

    def to_json(self) -> dict[str, object]:
        """Every field, plus ``exactly_once``."""
        data = attrs.asdict(self)
        data["refused_by_code"] = dict(self.refused_by_code)
        data["faults"] = dict(self.faults)
        data["exactly_once"] = self.exactly_once
        return data


@attrs.frozen(kw_only=True)
class DemoSummary:
    """What the demo did on both venues, from their audits and the journal."""

    transfers: int
    venues: tuple[VenueSummary, ...]
    journal: Path
    elapsed_seconds: float

    def venue(self, name: str) -> VenueSummary:
        """The summary of venue ``name``."""
        return next(v for v in self.venues if v.venue == name)

    @property
    def exactly_once(self) -> bool:
        """Exactly once on every venue."""
        return all(v.exactly_once for v in self.venues)

    @property
    def succeeded(self) -> int:
        """Successes over both venues."""
        return sum(v.succeeded for v in self.venues)

    @property
    def failed(self) -> int:
        """Refusals over both venues."""
        return sum(v.failed for v in self.venues)

    @property
    def executed(self) -> int:
        """Executions in both audits."""
        return sum(v.executed for v in self.venues)

    def to_json(self) -> dict[str, object]:
        """The ``xferkit demo --json`` object (docs/cli.md)."""
        return {
            "transfers": self.transfers,
            "exactly_once": self.exactly_once,
            "journal": str(self.journal),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "venues": {v.venue: v.to_json() for v in self.venues},
        }


def demo_requests(transfers: int, seed: int) -> list[TransferRequest]:
    """The demo's rebalancing plan: alternately XT and HTX, about 3% of them refused.

    Every HTX amount is unique (its last six decimals are the transfer's number): HTX has no
    idempotency key, so the audit ties an execution to its transfer by the amount.
    """
    if not 0 < transfers <= MAX_DEMO_TRANSFERS:
        raise ValueError(f"transfers must be 1..{MAX_DEMO_TRANSFERS}, not {transfers}")
    rng = random.Random(seed)
    requests = []
    for n in range(transfers):
        whole = _TOO_MUCH if rng.random() < _REFUSED_SHARE else rng.randint(1, 250)
        cents = rng.randint(0, 99)
        key = f"demo-{seed}-{n:04d}"
        if n % 2 == 0:
            source, target = rng.sample(_XT_ACCOUNTS, 2)
            request = TransferRequest(
                venue="xt",
                currency="usdt",
                amount=Decimal(f"{whole}.{cents:02d}"),
                from_account=source,
                to_account=target,
                key=key,
            )
        else:
            other = rng.choice(_HTX_ACCOUNTS)
            source, target = ("spot", other) if rng.random() < 0.5 else (other, "spot")
            request = TransferRequest(
                venue="htx",
                currency="usdt",
                amount=Decimal(f"{whole}.{cents:02d}{n:06d}"),
                from_account=source,
                to_account=target,
                margin_account="USDT" if other == "usdt_futures" else None,
                key=key,
            )
        requests.append(request)
    return requests


async def run_demo(
    *,
    transfers: int = 300,
    concurrency: int = 16,
    fault_rate: float = 0.3,
    seed: int = 2026,
    journal_dir: Path | None = None,
    venues: DemoVenues | None = None,
    on_progress: Callable[[Receipt | Exception], None] | None = None,
) -> DemoSummary:
    """Run the demo batch against loopback fakes of XT and HTX and verify it against their audits.

    Args:
        transfers: transfers in the batch, alternately XT and HTX.
        concurrency: transfers in flight at once (``transfer_many``).
        fault_rate: share of transfer requests that hit a fault, on each venue.
        seed: seeds the plan and the faults.
        journal_dir: where the SQLite journal goes (default: a new temporary directory).
        venues: the fakes to run against (default: new ones); tests pass their own to check
            the summary against the audits.
        on_progress: called with each outcome of the faulted batch as it finishes.
    """
    began = time.monotonic()
    fakes = venues or DemoVenues.create(fault_rate=fault_rate, seed=seed)
    plan = demo_requests(transfers, seed)
    directory = journal_dir or Path(tempfile.mkdtemp(prefix="xferkit-demo-"))
    journal = directory / "journal.sqlite3"
    async with serve(fakes.xt, fakes.htx, slow_seconds=0.6) as server:
        # The fakes enforce no rate limit, so the demo lifts the venues' real ones (XT 10/s;
        # HTX 1/s per UID) to finish in seconds. Never do this against the real venues. The
        # fake's ledger shows a transfer at once, so HTX's settle window and clock margin
        # shrink to their floors too (defaults 10 s and 2 s, sized for the real venue).
        xt = XT(DEMO_XT_API_KEY, DEMO_XT_SECRET, base_url=server.url("xt"), rate_limit=500)
        htx = HTX(
            DEMO_HTX_ACCESS_KEY,
            DEMO_HTX_SECRET,
            base_url=server.url("htx"),
            rate_limit=500,
            settle_seconds=MIN_SETTLE_SECONDS,
            ledger_margin_seconds=MIN_LEDGER_MARGIN_SECONDS,
        )
        # A short timeout makes the fakes' slow answers (0.6 s) time out: ambiguous outcomes.
        policy = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.5, deadline=20)
        async with Client(xt, htx, journal=journal, timeout=0.4, retry=policy) as client:
            first = await _submit(client, plan, concurrency, on_progress)
            fakes.xt_faults.enabled = fakes.htx_faults.enabled = False  # the outage is over
            resumed = await client.resume()
            # Submitting the whole plan again must not move money again: every key replays.
            final = await _submit(client, plan, concurrency, None)
            intents = await client.journal.list()

    summaries = []
    for name in _VENUES:
        requests = [r for r in plan if r.venue == name]
        mine = {r.key for r in requests}
        if name == "xt":
            counts = fakes.xt.executions_by_token()
            executions = {
                r.key: counts[
                    xt.biz_id(
                        str(r.key),
                        currency=r.currency,
                        amount=r.amount,
                        from_account=r.from_account,
                        to_account=r.to_account,
                        symbol=r.symbol,
                    )
                ]
                for r in requests
            }
            extra = sum(1 for count in counts.values() if count > 1)
            executed = len(fakes.xt.audit)
        else:
            executions = {
                r.key: fakes.htx.executions_matching(
                    r.from_account, r.to_account, r.currency, r.amount
                )
                for r in requests
            }
            extra = sum(1 for count in executions.values() if count > 1)
            executed = len(fakes.htx.audit)
        summaries.append(
            _venue_summary(
                name,
                requests=len(requests),
                first={k: o for k, o in first.items() if k in mine},
                final={k: o for k, o in final.items() if k in mine},
                resumed=[r for r in resumed if r.key in mine],
                intents=[i for i in intents if i.key in mine],
                executions=executions,
                executed=executed,
                executed_twice=extra,
                faults=fakes.faults(name),
            )
        )
    return DemoSummary(
        transfers=transfers,
        venues=tuple(summaries),
        journal=journal,
        elapsed_seconds=time.monotonic() - began,
    )


async def _submit(
    client: Client,
    plan: list[TransferRequest],
    concurrency: int,
    on_progress: Callable[[Receipt | Exception], None] | None,
) -> dict[str, Receipt | Exception]:
    """Run ``plan`` through ``transfer_many``; each key's outcome."""
    outcomes: dict[str, Receipt | Exception] = {}
    async for outcome in client.transfer_many(plan, concurrency=concurrency):
        if isinstance(outcome, Receipt):
            outcomes[outcome.key] = outcome
        elif isinstance(outcome, XferError) and outcome.request is not None:
            outcomes[str(outcome.request.key)] = outcome
        else:
            raise outcome  # not a transfer's outcome: a bug the demo must not hide
        if on_progress is not None:
            on_progress(outcome)
    return outcomes


def _venue_summary(
    name: str,
    *,
    requests: int,
    first: Mapping[str, Receipt | Exception],
    final: Mapping[str, Receipt | Exception],
    resumed: list[Receipt],
    intents: list[Intent],
    executions: Mapping[str | None, int],
    executed: int,
    executed_twice: int,
    faults: FaultPlan,
) -> VenueSummary:
    succeeded = [
        k
        for k, o in final.items()
        if isinstance(o, Receipt) and o.status is TransferStatus.SUCCEEDED
    ]
    refusals = {k: o for k, o in final.items() if isinstance(o, VenueError)}
    return VenueSummary(
        venue=name,
        transfers=requests,
        succeeded=len(succeeded),
        failed=len(refusals),
        refused_by_code=dict(
            sorted(
                collections.Counter(e.code or type(e).__name__ for e in refusals.values()).items()
            )
        ),
        unresolved=requests - len(succeeded) - len(refusals),
        left_for_operator=sum(
            1 for i in intents if i.status is TransferStatus.UNKNOWN and i.error is not None
        ),
        unknown_after_batch=sum(
            1 for o in first.values() if isinstance(o, TransferOutcomeUnknownError)
        ),
        settled_by_resume=sum(1 for r in resumed if r.status is not TransferStatus.UNKNOWN),
        attempts=sum(i.attempts for i in intents),
        retries=sum(max(i.attempts - 1, 0) for i in intents),
        faults={fault.value: count for fault, count in faults.injected.items() if count},
        reconciled=sum(1 for i in intents if i.ledger_ref is not None) if name == "htx" else None,
        executed=executed,
        executed_twice=executed_twice,
        succeeded_not_executed=sum(1 for k in succeeded if executions[k] != 1),
        failed_but_executed=sum(1 for k in refusals if executions[k] != 0),
        replayed_on_resubmit=sum(
            1 for o in final.values() if isinstance(o, Receipt) and o.replayed
        ),
    )
