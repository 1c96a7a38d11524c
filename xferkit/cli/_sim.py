"""``xferkit sim``: serve the simulated XT and HTX on loopback until Ctrl-C.

It prints each venue's base URL, the demo credentials, and the ``export`` lines that point the
command line (or ``XT.from_env()`` / ``HTX.from_env()``) at it, including a journal of its own
so that keys tried against the simulation never mix with real ones.

Loopback only: the fakes accept published demo credentials and hold no real money, but a
listener on a public interface would still be an open, unauthenticated service.
"""

from __future__ import annotations

import ipaddress
import shlex
import signal
import tempfile
from pathlib import Path

import anyio
import attrs
import click

from .._client import DEFAULT_TIMEOUT
from .._demo import DEMO_HTX_ACCESS_KEY, DEMO_HTX_SECRET, DEMO_XT_API_KEY, DEMO_XT_SECRET
from ..testing import FakeHTX, FakeXT, FaultPlan, serve
from ..testing._htx import TIME_MESSAGES
from ..testing._xt import DUPLICATE_CODES
from ._common import JOURNAL_ENVVAR, CliError, run_async
from ._logging import verbosity_options

__all__ = ["sim"]


def _loopback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Accept a loopback address (or ``localhost``); refuse anything else, saying why."""
    if value.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an IP address; sim serves on loopback only", ctx, param
        ) from None
    if not address.is_loopback:
        raise click.BadParameter(
            f"{value} is not a loopback address: sim serves fake venues with published "
            "credentials, so it listens on loopback only",
            ctx,
            param,
        )
    return str(address)


@attrs.frozen(kw_only=True)
class _Stopped:
    signal_name: str
    executed: dict[str, int]
    faults: int


@click.command("sim")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_loopback,
    help="The loopback address to serve on; any other address is refused.",
)
@click.option(
    "--xt-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="XT's port; 0 picks a free one.",
)
@click.option(
    "--htx-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="HTX's port; 0 picks a free one.",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of transfer requests that hit a random fault (drops, 5xx, 429, slow answers, "
    "clock skew).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the faults.")
@click.option(
    "--xt-duplicate-code",
    type=click.Choice(DUPLICATE_CODES),
    default=DUPLICATE_CODES[0],
    show_default=True,
    help="How XT answers a reused bizId; XT documents both codes.",
)
@click.option(
    "--htx-time-message",
    type=click.Choice(TIME_MESSAGES),
    default=TIME_MESSAGES[0],
    show_default=True,
    help="How HTX words a clock outside ±5 minutes: today's English message, or the older "
    "deployments' Chinese-only one.",
)
@verbosity_options
def sim(
    *,
    host: str,
    xt_port: int,
    htx_port: int,
    fault_rate: float,
    seed: int,
    xt_duplicate_code: str,
    htx_time_message: str,
) -> None:
    """Serve the simulated XT and HTX venues on loopback until Ctrl-C (or SIGTERM).

    Prints the base URLs, the demo credentials, and export lines to paste into another shell.
    Exit status 0 when stopped by SIGINT or SIGTERM, 2 when it could not start.
    """
    plan = FaultPlan(rate=fault_rate, seed=seed)
    fake_xt = FakeXT(
        api_key=DEMO_XT_API_KEY,
        secret=DEMO_XT_SECRET,
        faults=plan,
        duplicate_code=xt_duplicate_code,
    )
    fake_htx = FakeHTX(
        access_key=DEMO_HTX_ACCESS_KEY,
        secret=DEMO_HTX_SECRET,
        faults=plan,
        time_message=htx_time_message,
    )
    journal = Path(tempfile.mkdtemp(prefix="xferkit-sim-")) / "journal.sqlite3"

    async def run() -> _Stopped:
        # Installed before anything is printed: a Ctrl-C after the URLs appear is a clean stop.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            # A slow answer is held past the command line's request timeout, so it really is
            # a timeout for the client, as on a struggling venue.
            try:
                async with serve(
                    fake_xt,
                    fake_htx,
                    slow_seconds=DEFAULT_TIMEOUT + 1,
                    host=host,
                    ports={"xt": xt_port, "htx": htx_port},
                ) as server:
                    _announce(server.url("xt"), server.url("htx"), journal, fault_rate, seed)
                    async for signum in signals:
                        return _Stopped(
                            signal_name=signal.Signals(signum).name,
                            executed={"xt": len(fake_xt.audit), "htx": len(fake_htx.audit)},
                            faults=sum(plan.injected.values()),
                        )
            except OSError as exc:  # a port in use, an address this machine lacks
                raise CliError(f"cannot serve on {host}: {exc}") from exc
        raise AssertionError("unreachable: the signal stream does not end")  # pragma: no cover

    stopped = run_async(run)
    xt, htx = stopped.executed["xt"], stopped.executed["htx"]
    click.echo(
        f"stopped by {stopped.signal_name}: executed {xt} transfer{'s' if xt != 1 else ''} on "
        f"xt and {htx} on htx; {stopped.faults} fault{'s' if stopped.faults != 1 else ''} "
        "injected"
    )


def _announce(xt_url: str, htx_url: str, journal: Path, fault_rate: float, seed: int) -> None:
    """Print where the venues are and how to point the command line at them."""
    exports = {
        "XFERKIT_XT_API_KEY": DEMO_XT_API_KEY,
        "XFERKIT_XT_SECRET": DEMO_XT_SECRET,
        "XFERKIT_XT_BASE_URL": xt_url,
        "XFERKIT_HTX_ACCESS_KEY": DEMO_HTX_ACCESS_KEY,
        "XFERKIT_HTX_SECRET": DEMO_HTX_SECRET,
        "XFERKIT_HTX_BASE_URL": htx_url,
        JOURNAL_ENVVAR: str(journal),
    }
    lines = [
        f"xferkit sim: simulated XT and HTX on loopback; faults on {fault_rate:.0%} of "
        f"transfer requests (seed {seed})",
        "",
        f"  xt   {xt_url}   api key {DEMO_XT_API_KEY}   secret {DEMO_XT_SECRET}",
        f"  htx  {htx_url}   access key {DEMO_HTX_ACCESS_KEY}   secret {DEMO_HTX_SECRET}",
        "",
        "Paste into another shell to point xferkit at it (with a journal of its own, so keys",
        "tried here never mix with real ones):",
        "",
        *(f"export {name}={shlex.quote(value)}" for name, value in exports.items()),
        "",
        "Serving until Ctrl-C (SIGINT) or SIGTERM.",
    ]
    click.echo("\n".join(lines))
