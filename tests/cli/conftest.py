"""Fixtures for the command line: both fake venues on loopback, and the CLI with a clean env."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import CliRunner, Result

from xferkit.cli._app import app
from xferkit.testing import FakeHTX, FakeXT, FaultPlan, LoopbackServer, serve
from xferkit.venues import htx as htx_venue
from xferkit.venues import xt as xt_venue

REPO = Path(__file__).resolve().parents[2]
XT_KEY = "cli6-xt-key-0001"
XT_SECRET = "cli6-xt-secret-do-not-leak-77aa"
HTX_KEY = "cli6-htx-key-0001"
HTX_SECRET = "cli6-htx-secret-do-not-leak-19fe"
CREDENTIALS = {
    "XFERKIT_XT_API_KEY": XT_KEY,
    "XFERKIT_XT_SECRET": XT_SECRET,
    "XFERKIT_HTX_ACCESS_KEY": HTX_KEY,
    "XFERKIT_HTX_SECRET": HTX_SECRET,
}
CLEAN: dict[str, str | None] = dict.fromkeys(
    [*CREDENTIALS, "XFERKIT_XT_BASE_URL", "XFERKIT_HTX_BASE_URL", "XFERKIT_JOURNAL"], None
)
SECRETS = (XT_SECRET, HTX_SECRET)
UNKNOWN_SPELLING = "spot-to-unified-account"
"""A ledger transferType xferkit does not know: HTX's list is open, so it means "cannot tell"
and the transfer stays UNKNOWN after a lost answer."""


@attrs.frozen
class Fakes:
    """Fake XT and HTX on loopback, run by a portal thread so the CLI can own the main loop."""

    portal: BlockingPortal
    server: LoopbackServer
    xt: FakeXT
    htx: FakeHTX
    xt_faults: FaultPlan
    htx_faults: FaultPlan

    @property
    def env(self) -> dict[str, str]:
        """Credentials and base URLs of both fakes, as a user exports them."""
        return {
            **CREDENTIALS,
            "XFERKIT_XT_BASE_URL": self.server.url("xt"),
            "XFERKIT_HTX_BASE_URL": self.server.url("htx"),
        }

    def transfer_requests(self) -> int:
        """Transfer requests that reached either fake so far."""
        xt = sum(1 for r in self.xt.requests if r.request.path == xt_venue.TRANSFER_PATH)
        htx = sum(1 for r in self.htx.requests if r.request.path == htx_venue.TRANSFER_PATH)
        return xt + htx


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    """Both fakes on the real clock (the CLI signs with real time), each with a fault plan."""
    xt_faults, htx_faults = FaultPlan(), FaultPlan()
    fake_xt = FakeXT(api_key=XT_KEY, secret=XT_SECRET, faults=xt_faults)
    fake_htx = FakeHTX(access_key=HTX_KEY, secret=HTX_SECRET, faults=htx_faults)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(fake_xt, fake_htx)) as server,
    ):
        yield Fakes(portal, server, fake_xt, fake_htx, xt_faults, htx_faults)


def invoke(*args: str | Path, env: Mapping[str, str | None]) -> Result:
    """Run the CLI in-process with only the given xferkit variables set."""
    environment = {**CLEAN, "COLUMNS": "250", **env}
    return CliRunner().invoke(app, [str(a) for a in args], env=environment, catch_exceptions=False)


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment without xferkit's variables, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env["COLUMNS"] = "200"
    env.update(extra)
    return env
