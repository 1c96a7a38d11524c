"""`xferkit.transfer()`: one call with credentials from the environment and the default journal."""

from __future__ import annotations

from pathlib import Path

import pytest

import xferkit
from xferkit.testing import FakeHTX, FakeXT, serve

from .conftest import API_KEY, SECRET, transfer_args


async def test_module_transfer_reads_the_environment_and_journals_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials and base URL come from XFERKIT_XT_*; the journal lives under ~/.xferkit."""
    fake = FakeXT(api_key=API_KEY, secret=SECRET)
    async with serve(fake) as server:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("XFERKIT_XT_API_KEY", API_KEY)
        monkeypatch.setenv("XFERKIT_XT_SECRET", SECRET)
        monkeypatch.setenv("XFERKIT_XT_BASE_URL", server.url("xt"))
        receipt = await xferkit.transfer("xt", **transfer_args(), key="env-1")
        replay = await xferkit.transfer("xt", **transfer_args(), key="env-1")
    assert receipt.status is xferkit.TransferStatus.SUCCEEDED
    assert replay.replayed
    assert len(fake.audit) == 1
    assert (tmp_path / ".xferkit" / "journal.sqlite3").is_file()


async def test_module_transfer_without_credentials_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing environment variables are named in an InvalidRequestError, before any I/O."""
    monkeypatch.delenv("XFERKIT_XT_API_KEY", raising=False)
    with pytest.raises(xferkit.InvalidRequestError, match="XFERKIT_XT_API_KEY"):
        await xferkit.transfer("xt", **transfer_args())


async def test_module_transfer_reaches_htx_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XFERKIT_HTX_* credentials and base URL are read for venue "htx" (signed as called)."""
    fake = FakeHTX(access_key="htx-key", secret="htx-secret")
    async with serve(fake) as server:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("XFERKIT_HTX_ACCESS_KEY", "htx-key")
        monkeypatch.setenv("XFERKIT_HTX_SECRET", "htx-secret")
        monkeypatch.setenv("XFERKIT_HTX_BASE_URL", server.url("htx"))
        receipt = await xferkit.transfer("htx", **transfer_args(to_account="otc"), key="env-htx")
    assert receipt.transfer_id == fake.audit[0].transfer_id
