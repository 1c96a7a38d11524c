"""The child process of the crash test: resume, then run one mixed XT/HTX batch.

Run as ``python -m tests.crash.batch --xt-url URL --htx-url URL --journal PATH``. The keys and
their parameters are a pure function of the seed, so every round re-submits the same transfers.
It prints one JSON line when the client is open (``{"event": "started"}``) and one JSON summary
line when the batch is done; the test may SIGKILL it at any moment in between.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from decimal import Decimal
from typing import Any

import anyio
import attrs

import xferkit
from xferkit.venues.htx import DEFAULT_SETTLE_SECONDS

XT_API_KEY = "crash-xt-api-key-0001"
XT_SECRET = "crash-xt-secret-5e1f"
HTX_ACCESS_KEY = "crash-htx-access-key-0001"
HTX_SECRET = "crash-htx-secret-9a7c"

XT_ACCOUNTS = ("spot", "usdt_futures", "finance", "coin_futures")
HTX_PAIRS = (
    ("spot", "usdt_futures"),
    ("usdt_futures", "spot"),
    ("spot", "coin_futures"),
    ("coin_futures", "spot"),
    ("spot", "otc"),
    ("otc", "spot"),
)
OVERSIZED = Decimal(10**12)  # more than any account holds: the venue refuses it
LEASE_SECONDS = 1.0  # a killed process's leases lapse quickly, so the next round takes them over


@attrs.frozen(kw_only=True)
class Planned:
    """One keyed transfer of the batch; the same key always has the same parameters."""

    key: str
    venue: str
    currency: str
    amount: Decimal
    from_account: str
    to_account: str

    @property
    def oversized(self) -> bool:
        """Whether the venue must refuse it for lack of funds."""
        return self.amount >= OVERSIZED


def plan_batch(seed: int, xt_keys: int, htx_keys: int) -> list[Planned]:
    """The batch for ``seed``: XT and HTX keys interleaved, a few of each oversized.

    Every HTX amount is unique (for up to 999 HTX keys), so the fake's executions map back
    to keys.
    """
    rng = random.Random(seed)
    oversized_xt = set(rng.sample(range(xt_keys), max(1, xt_keys // 15)))
    oversized_htx = set(rng.sample(range(htx_keys), max(1, htx_keys // 15)))
    xt = []
    for n in range(xt_keys):
        source, target = rng.sample(XT_ACCOUNTS, 2)
        amount = (
            OVERSIZED
            if n in oversized_xt
            else Decimal(f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}")
        )
        xt.append(Planned(key=f"xt-{seed}-{n:03d}", venue="xt", currency="usdt",
                          amount=amount, from_account=source, to_account=target))  # fmt: skip
    htx = []
    for n in range(htx_keys):
        source, target = rng.choice(HTX_PAIRS)
        amount = OVERSIZED + n if n in oversized_htx else Decimal(n + 1) / 1000 + rng.randint(1, 9)
        htx.append(Planned(key=f"htx-{seed}-{n:03d}", venue="htx", currency="usdt",
                           amount=amount, from_account=source, to_account=target))  # fmt: skip
    batch: list[Planned] = []
    for n in range(max(xt_keys, htx_keys)):
        batch.extend(xt[n : n + 1])
        batch.extend(htx[n : n + 1])
    return batch


def emit(payload: dict[str, Any]) -> None:
    """Write one JSON line to stdout at once (the parent reads it while we run)."""
    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Resume the journal, submit the whole batch, and summarise what came back."""
    xt = xferkit.XT(XT_API_KEY, XT_SECRET, base_url=args.xt_url, rate_limit=1000)
    htx = xferkit.HTX(
        HTX_ACCESS_KEY,
        HTX_SECRET,
        base_url=args.htx_url,
        rate_limit=1000,
        settle_seconds=args.settle_seconds,
    )
    retry = xferkit.RetryPolicy(
        max_attempts=4, initial_backoff=0.02, max_backoff=0.2, deadline=args.deadline
    )
    outcomes: dict[str, str] = {}
    async with xferkit.Client(
        xt, htx, journal=args.journal, timeout=0.25, retry=retry, lease_seconds=LEASE_SECONDS
    ) as client:
        emit({"event": "started"})
        resumed = await client.resume()
        emit({"event": "resumed", "receipts": len(resumed)})
        limiter = anyio.CapacityLimiter(args.concurrency)

        async def one(planned: Planned) -> None:
            async with limiter:
                try:
                    receipt = await client.transfer(
                        planned.venue,
                        currency=planned.currency,
                        amount=planned.amount,
                        from_account=planned.from_account,
                        to_account=planned.to_account,
                        key=planned.key,
                    )
                except xferkit.XferError as exc:
                    outcomes[planned.key] = type(exc).__name__
                else:
                    outcomes[planned.key] = receipt.status.value

        async with anyio.create_task_group() as tg:
            for planned in plan_batch(args.seed, args.xt_keys, args.htx_keys):
                tg.start_soon(one, planned)
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    unresolved = sorted(
        key for key, outcome in outcomes.items() if outcome == "TransferOutcomeUnknownError"
    )
    return {"event": "done", "outcomes": counts, "unresolved": unresolved}


def main() -> None:
    """Parse the arguments and run the batch once."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--xt-url", required=True)
    parser.add_argument("--htx-url", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--xt-keys", type=int, default=100)
    parser.add_argument("--htx-keys", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--settle-seconds", type=float, default=DEFAULT_SETTLE_SECONDS)
    parser.add_argument("--deadline", type=float, default=8.0, help="RetryPolicy.deadline")
    emit(anyio.run(run, parser.parse_args()))


if __name__ == "__main__":
    main()
