"""One member of a fleet: a real process that journals in PostgreSQL and talks to loopback fakes.

Run as::

    python -m tests.fleet.worker --dsn DSN --schema SCHEMA --xt-url URL --htx-url URL \
        --seed 7 --keys 200 --mode submit|resume

The keys and their parameters are a pure function of ``--seed`` and ``--keys``, so every process
of a fleet submits the same transfers under the same keys. Output is JSON lines on stdout:
``{"event": "started"}`` once the client is open (with ``--wait-for-go`` it then waits for a
line on stdin, so a fleet starts together), then in submit mode one ``outcome`` line per
key (its status and transfer id, or its error's class and code) and in resume mode one
``receipt`` line per receipt, then one ``done`` summary line. Every exception is reported as a
line, never as a traceback: a test can then tell xferkit's typed errors from anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import traceback
from decimal import Decimal
from typing import Any

import anyio
import anyio.to_thread
import attrs

import xferkit
from xferkit.venues.htx import DEFAULT_SETTLE_SECONDS

XT_API_KEY = "fleet-xt-api-key-0001"
XT_SECRET = "fleet-xt-secret-77c1"
HTX_ACCESS_KEY = "fleet-htx-access-key-0001"
HTX_SECRET = "fleet-htx-secret-3b0e"

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
LEASE_SECONDS = 2.0
POOL_SIZE = 20


@attrs.frozen(kw_only=True)
class Planned:
    """One keyed transfer; every process gives a key the same parameters."""

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


def plan(seed: int, keys: int, *, oversized: bool = True) -> list[Planned]:
    """The batch for ``seed``: three XT keys to one HTX key, a few of each oversized.

    Every HTX amount is unique (up to 999 HTX keys), so the fake's executions map back to keys
    and no two HTX intents ever wait for each other as identical movements.
    """
    rng = random.Random(seed)
    xt_keys = keys * 3 // 4
    htx_keys = keys - xt_keys
    big_xt = set(rng.sample(range(xt_keys), max(1, xt_keys // 25))) if oversized else set()
    big_htx = set(rng.sample(range(htx_keys), max(1, htx_keys // 25))) if oversized else set()
    xt = []
    for n in range(xt_keys):
        source, target = rng.sample(XT_ACCOUNTS, 2)
        amount = (
            OVERSIZED if n in big_xt else Decimal(f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}")
        )
        xt.append(Planned(key=f"fleet-{seed}-xt-{n:03d}", venue="xt", currency="usdt",
                          amount=amount, from_account=source, to_account=target))  # fmt: skip
    htx = []
    for n in range(htx_keys):
        source, target = rng.choice(HTX_PAIRS)
        amount = OVERSIZED + n if n in big_htx else Decimal(n + 1) / 1000 + rng.randint(1, 9)
        htx.append(Planned(key=f"fleet-{seed}-htx-{n:03d}", venue="htx", currency="usdt",
                           amount=amount, from_account=source, to_account=target))  # fmt: skip
    # Interleaved the way a rebalancing batch would be: three XT transfers, then one HTX.
    batch: list[Planned] = []
    for n in range(max(len(xt), 3 * len(htx))):
        batch.extend(xt[3 * n : 3 * n + 3])
        batch.extend(htx[n : n + 1])
    return batch


class OneLineFormatter(logging.Formatter):
    """One stderr line per log record, an exception shown by class and message only.

    asyncpg logs its pool's failed reconnections with their tracebacks; on one line, a
    traceback on stderr means an exception escaped this process, and nothing else does.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as ``LEVEL logger: message [module.Error: text]``."""
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" [{type(exc).__module__}.{type(exc).__name__}: {exc}]"
        return text


def emit(payload: dict[str, Any]) -> None:
    """Write one JSON line to stdout at once (the parent reads it while we run)."""
    sys.stdout.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def error_line(exc: BaseException) -> dict[str, Any]:
    """Describe an exception: its class, whether it is xferkit's, and its venue code."""
    line: dict[str, Any] = {
        "error": type(exc).__name__,
        "typed": isinstance(exc, xferkit.XferError),
        "code": getattr(exc, "code", None),
        "key_reusable": getattr(exc, "key_reusable", False),
        "message": str(exc)[:500],
    }
    if not line["typed"]:
        line["detail"] = "".join(traceback.format_exception(exc))
    return line


def receipt_line(receipt: xferkit.Receipt) -> dict[str, Any]:
    """What a receipt says, as other processes must repeat it."""
    return {
        "key": receipt.key,
        "status": receipt.status.value,
        "transfer_id": receipt.transfer_id,
        "replayed": receipt.replayed,
        "attempts": receipt.attempts,
    }


def build_client(args: argparse.Namespace) -> xferkit.Client:
    """The client every fleet member runs: loopback fakes, PostgreSQL journal, short timings."""
    xt = xferkit.XT(XT_API_KEY, XT_SECRET, base_url=args.xt_url, rate_limit=1000)
    htx = xferkit.HTX(
        HTX_ACCESS_KEY,
        HTX_SECRET,
        base_url=args.htx_url,
        rate_limit=1000,
        settle_seconds=args.settle_seconds,
    )
    retry = xferkit.RetryPolicy(
        max_attempts=args.max_attempts,
        initial_backoff=0.02,
        max_backoff=0.2,
        deadline=args.deadline,
    )
    journal = xferkit.PostgresJournal(args.dsn, schema=args.schema, max_size=args.pool_size)
    return xferkit.Client(
        xt, htx, journal=journal, timeout=0.25, retry=retry, lease_seconds=LEASE_SECONDS
    )


async def submit(client: xferkit.Client, args: argparse.Namespace) -> dict[str, int]:
    """Transfer every planned key, ``--concurrency`` at a time; one line per key."""
    batch = plan(args.seed, args.keys, oversized=not args.no_oversized)
    if args.order_seed:
        random.Random(args.order_seed).shuffle(batch)
    limiter = anyio.CapacityLimiter(args.concurrency)
    counts: dict[str, int] = {}

    async def one(planned: Planned) -> None:
        async with limiter:
            line: dict[str, Any] = {"event": "outcome", "key": planned.key}
            try:
                receipt = await client.transfer(
                    planned.venue,
                    currency=planned.currency,
                    amount=planned.amount,
                    from_account=planned.from_account,
                    to_account=planned.to_account,
                    key=planned.key,
                )
            except Exception as exc:  # reported: the test tells typed errors from raw ones
                line.update(error_line(exc))
                outcome = line["error"]
            else:
                line.update(receipt_line(receipt))
                outcome = receipt.status.value
            counts[outcome] = counts.get(outcome, 0) + 1
            emit(line)

    async with anyio.create_task_group() as tg:
        for planned in batch:
            tg.start_soon(one, planned)
    return counts


async def resume(client: xferkit.Client) -> dict[str, int]:
    """Run ``client.resume()`` once; one line per receipt."""
    counts: dict[str, int] = {}
    try:
        receipts = await client.resume()
    except Exception as exc:  # reported: the test tells typed errors from raw ones
        emit({"event": "resume_failed", **error_line(exc)})
        return {"resume_failed": 1}
    for receipt in receipts:
        emit({"event": "receipt", **receipt_line(receipt)})
        counts[receipt.status.value] = counts.get(receipt.status.value, 0) + 1
    return counts


async def run(args: argparse.Namespace) -> None:
    """Open the client, wait for the fleet's go if asked, do the mode's work, summarise."""
    begin = time.monotonic()
    try:
        async with build_client(args) as client:
            emit({"event": "started"})
            if args.wait_for_go:
                # The parent's barrier: every worker of the fleet has opened its client.
                await anyio.to_thread.run_sync(sys.stdin.readline)
            began = time.time()
            counts = await (submit(client, args) if args.mode == "submit" else resume(client))
    except Exception as exc:  # reported: the test tells typed errors from raw ones
        emit({"event": "failed", **error_line(exc)})
        return
    emit(
        {
            "event": "done",
            "mode": args.mode,
            "counts": counts,
            "began": began,
            "seconds": round(time.monotonic() - begin, 3),
        }
    )


def main() -> None:
    """Parse the arguments and run once."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--xt-url", required=True)
    parser.add_argument("--htx-url", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--mode", choices=("submit", "resume"), required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE, help="journal connections")
    parser.add_argument("--order-seed", type=int, default=0, help="shuffle the batch (0: plan)")
    parser.add_argument("--no-oversized", action="store_true", help="no refused transfers")
    parser.add_argument("--max-attempts", type=int, default=6)
    parser.add_argument("--deadline", type=float, default=20.0)
    parser.add_argument("--settle-seconds", type=float, default=DEFAULT_SETTLE_SECONDS)
    parser.add_argument("--wait-for-go", action="store_true", help="start on a line on stdin")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
