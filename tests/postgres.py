"""Where the PostgreSQL tests find their server, and the rule that CI never skips them."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    """The test server's DSN: ``XFERKIT_TEST_POSTGRES_DSN`` or the local default."""
    return os.environ.get("XFERKIT_TEST_POSTGRES_DSN", DEFAULT_DSN)


def unique_schema() -> str:
    """A schema name of its own for one test, dropped afterwards."""
    return f"xferkit_test_{uuid.uuid4().hex[:12]}"


async def require_postgres() -> str:
    """The DSN if a server answers; else skip, or fail under CI (``CI=true``)."""
    import asyncpg  # noqa: PLC0415

    dsn = postgres_dsn()
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncio.TimeoutError) as exc:
        message = f"no PostgreSQL at {dsn}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI must run the PostgreSQL tests)")
        pytest.skip(message)
    await connection.close()
    return dsn


async def drop_schema(dsn: str, schema: str) -> None:
    """Remove a test schema and everything in it."""
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()
