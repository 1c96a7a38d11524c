"""One of several processes writing one SQLite journal at once (`test_sqlite_shared`).

It claims every key of a shared list concurrently, saves the ones it created as settled, and
prints what it created and every error it met, as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import anyio
import attrs

from xferkit import SqliteJournal, TransferStatus
from xferkit.journal import Intent

from .test_contract import LEASE, make_intent


async def run(path: str, name: str, keys: int, start_at: float) -> dict[str, list[str]]:
    journal = SqliteJournal(path)
    await journal.open()
    await anyio.sleep(max(0.0, start_at - time.time()))  # every process starts together
    created: list[str] = []
    errors: list[str] = []

    async def one(key: str) -> None:
        try:
            claim = await journal.claim(make_intent(key), owner=name, lease_seconds=LEASE)
            if claim.created:
                created.append(key)
                done: Intent = attrs.evolve(claim.intent, status=TransferStatus.SUCCEEDED)
                await journal.save(done, owner=name, lease_seconds=None)
        except Exception as exc:
            errors.append(f"{key}: {exc!r}")

    try:
        async with anyio.create_task_group() as tg:
            for n in range(keys):
                tg.start_soon(one, f"shared-{n}")
    finally:
        await journal.aclose()
    return {"created": created, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("name")
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    args = parser.parse_args()
    print(json.dumps(anyio.run(run, args.path, args.name, args.keys, args.start_at)))


if __name__ == "__main__":
    main()
