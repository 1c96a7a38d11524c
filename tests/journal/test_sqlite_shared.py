"""Several processes writing one SQLite journal file at the same moment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio

from xferkit import SqliteJournal, TransferStatus

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_processes_sharing_a_file_create_each_key_once_and_lose_no_write(
    tmp_path: Path,
) -> None:
    """Three processes claim the same 300 keys at once, in group commits that contend for
    SQLite's write lock: every key is created by exactly one of them, no write fails, and
    every save of a created key is on disk."""
    path = tmp_path / "shared.sqlite3"
    schema = SqliteJournal(path)
    await schema.open()  # the schema, before the race
    await schema.aclose()
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    results: dict[str, dict[str, list[str]]] = {}
    start_at = time.time() + 3.0  # after every process has imported xferkit

    async def worker(name: str) -> None:
        done = await anyio.run_process(
            [
                *(sys.executable, "-m", "tests.journal.share_worker", str(path), name),
                *("--start-at", str(start_at)),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stderr=subprocess.PIPE,
        )
        results[name] = json.loads(done.stdout)

    async with anyio.create_task_group() as tg:
        for name in ("p1", "p2", "p3"):
            tg.start_soon(worker, name)

    assert [results[name]["errors"] for name in results] == [[], [], []]
    created = [key for result in results.values() for key in result["created"]]
    assert sorted(created) == sorted(f"shared-{n}" for n in range(300))  # each exactly once
    journal = SqliteJournal(path)
    await journal.open()
    try:
        stored = await journal.list()
    finally:
        await journal.aclose()
    assert {intent.status for intent in stored} == {TransferStatus.SUCCEEDED}
    assert len(stored) == 300
