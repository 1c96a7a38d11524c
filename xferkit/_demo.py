"""The demo: a faulted rebalancing batch through the real engine, verified against the venue.

Kept apart from the command line so tests can run it and compare its summary with the audit.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
import attrs

from ._client import Client
from ._exceptions import TransferOutcomeUnknownError, VenueError
from ._models import Receipt, TransferStatus
from ._retry import RetryPolicy
from .testing import FakeXT, FaultPlan, serve
from .venues.xt import XT

__all__ = ["DemoSummary", "run_demo"]

DEMO_API_KEY = "demo-api-key"
DEMO_SECRET = "demo-secret"  # noqa: S105 - the simulated venue's published demo credential
_ACCOUNTS = ("spot", "usdt_futures", "coin_futures", "finance")


@attrs.frozen(kw_only=True)
class DemoSummary:
    """What the demo did and what the simulated venue says really executed."""

    transfers: int
    succeeded: int
    failed: int
    unknown_after_batch: int
    settled_by_resume: int
    attempts: int
    faults: dict[str, int]
    executed: int
    executed_twice: int
    succeeded_not_executed: int
    failed_but_executed: int
    replayed_on_resubmit: int
    journal: Path

    @property
    def exactly_once(self) -> bool:
        """Every success executed once, every failure never, and nothing twice."""
        return (
            self.executed_twice == 0
            and self.succeeded_not_executed == 0
            and self.failed_but_executed == 0
            and self.executed == self.succeeded
        )


async def run_demo(
    *,
    transfers: int = 300,
    concurrency: int = 16,
    fault_rate: float = 0.3,
    seed: int = 2026,
    journal_dir: Path | None = None,
    on_progress: Callable[[Receipt | Exception], None] | None = None,
) -> DemoSummary:
    """Run the demo batch against a loopback fake XT and verify it against the venue's audit."""
    plan = FaultPlan(rate=fault_rate, seed=seed)
    fake = FakeXT(api_key=DEMO_API_KEY, secret=DEMO_SECRET, faults=plan)
    rng = random.Random(seed)
    batch = []
    for n in range(transfers):
        source, target = rng.sample(_ACCOUNTS, 2)
        amount = (
            "9999999" if rng.random() < 0.03 else f"{rng.randint(1, 250)}.{rng.randint(0, 99):02d}"
        )
        batch.append((f"demo-{seed}-{n:04d}", source, target, amount))

    directory = journal_dir or Path(tempfile.mkdtemp(prefix="xferkit-demo-"))
    journal = directory / "journal.sqlite3"
    outcomes: dict[str, Receipt | Exception] = {}
    async with serve(fake, slow_seconds=0.6) as server:
        # The simulated venue has no gateway limit to respect, so the demo lifts the 10/s default.
        xt = XT(DEMO_API_KEY, DEMO_SECRET, base_url=server.url("xt"), rate_limit=500)
        policy = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.5, deadline=20)
        async with Client(xt, journal=journal, timeout=0.4, retry=policy) as client:
            limiter = anyio.CapacityLimiter(concurrency)

            async def one(key: str, source: str, target: str, amount: str) -> None:
                async with limiter:
                    try:
                        outcome: Receipt | Exception = await client.transfer(
                            "xt",
                            currency="usdt",
                            amount=amount,
                            from_account=source,
                            to_account=target,
                            key=key,
                        )
                    except (VenueError, TransferOutcomeUnknownError) as exc:
                        outcome = exc
                outcomes[key] = outcome
                if on_progress is not None:
                    on_progress(outcome)

            async with anyio.create_task_group() as tg:
                for item in batch:
                    tg.start_soon(one, *item)

            unknown = [k for k, o in outcomes.items() if isinstance(o, TransferOutcomeUnknownError)]
            plan.enabled = False  # the outage is over: settle what is still open
            resumed = await client.resume()
            settled = sum(1 for r in resumed if r.status is not TransferStatus.UNKNOWN)

            # Re-submitting the whole plan must not move money again: every key replays.
            final: dict[str, Receipt | Exception] = {}
            for key, source, target, amount in batch:
                try:
                    final[key] = await client.transfer(
                        "xt",
                        currency="usdt",
                        amount=amount,
                        from_account=source,
                        to_account=target,
                        key=key,
                    )
                except (VenueError, TransferOutcomeUnknownError) as exc:
                    final[key] = exc

    executions = fake.executions_by_token()
    succeeded = [k for k, o in final.items() if isinstance(o, Receipt)]
    failed = [k for k, o in final.items() if isinstance(o, VenueError)]
    return DemoSummary(
        transfers=transfers,
        succeeded=len(succeeded),
        failed=len(failed),
        unknown_after_batch=len(unknown),
        settled_by_resume=settled,
        attempts=sum(o.attempts for o in final.values() if isinstance(o, Receipt)),
        faults={fault.value: count for fault, count in plan.injected.items() if count},
        executed=len(fake.audit),
        executed_twice=sum(1 for count in executions.values() if count > 1),
        succeeded_not_executed=sum(
            1 for k in succeeded if executions[xt.idempotency_token(k)] != 1
        ),
        failed_but_executed=sum(1 for k in failed if executions[xt.idempotency_token(k)] != 0),
        replayed_on_resubmit=sum(
            1 for o in final.values() if isinstance(o, Receipt) and o.replayed
        ),
        journal=journal,
    )
