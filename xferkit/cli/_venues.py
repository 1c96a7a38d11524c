"""Which environment variables configure each venue, and building venues from them.

Credentials come from the environment only, never from options: options show up in process
lists and shell history. Messages name variables, never their values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import attrs
import click

from .._exceptions import InvalidRequestError
from ..venues.htx import HTX
from ..venues.xt import XT
from ._common import CliError

__all__ = [
    "VENUE_ENV",
    "VENUE_NAMES",
    "VenueEnv",
    "check_base_url",
    "parse_rate_limits",
    "venue_env",
    "venue_from_env",
]


@attrs.frozen(kw_only=True)
class VenueEnv:
    """Which environment variables configure a venue, and how to build it from them."""

    name: str
    credentials: tuple[str, str]
    base_url: str
    build: Callable[[str | None], XT | HTX]

    @property
    def needs(self) -> str:
        """``"XFERKIT_XT_API_KEY and XFERKIT_XT_SECRET"``."""
        return " and ".join(self.credentials)

    def missing(self) -> list[str]:
        """The credential variables that are unset or empty."""
        return [c for c in self.credentials if not os.environ.get(c)]


VENUE_ENV = (
    VenueEnv(
        name="xt",
        credentials=("XFERKIT_XT_API_KEY", "XFERKIT_XT_SECRET"),
        base_url="XFERKIT_XT_BASE_URL",
        build=lambda url: XT.from_env(base_url=url),
    ),
    VenueEnv(
        name="htx",
        credentials=("XFERKIT_HTX_ACCESS_KEY", "XFERKIT_HTX_SECRET"),
        base_url="XFERKIT_HTX_BASE_URL",
        build=lambda url: HTX.from_env(base_url=url),
    ),
)
VENUE_NAMES = tuple(env.name for env in VENUE_ENV)


def venue_env(name: str) -> VenueEnv:
    """The `VenueEnv` of venue ``name`` (``"xt"`` or ``"htx"``)."""
    for env in VENUE_ENV:
        if env.name == name:
            return env
    raise KeyError(name)


def venue_from_env(env: VenueEnv, base_url: str | None, *, purpose: str) -> XT | HTX:
    """Build one venue from the environment, or fail with exit status 2.

    Args:
        env: the venue's variables.
        base_url: an explicit API host; ``None`` reads ``XFERKIT_<VENUE>_BASE_URL``, else the
            venue's default.
        purpose: what needs the credentials, for the message (``"a transfer on xt"``).
    """
    missing = env.missing()
    if missing:
        noun = "variable" if len(missing) == 1 else "variables"
        verb = "is" if len(missing) == 1 else "are"
        raise CliError(
            f"{env.name}: environment {noun} {' and '.join(missing)} {verb} not set "
            f"({purpose} needs {env.needs})"
        )
    url = base_url or os.environ.get(env.base_url)
    if url is not None and not url.startswith(("http://", "https://")):
        raise CliError(f"{env.base_url}={url!r} must start with http:// or https://")
    try:
        return env.build(base_url)
    except InvalidRequestError as exc:
        raise CliError(f"{env.name}: {exc}") from exc


def check_base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--…-base-url`` callback: refuse a URL without a scheme here, not per transfer."""
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} must start with http:// or https://", ctx, param)
    return value


def parse_rate_limits(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, float]:
    """``--rate-limit VENUE=N`` callback: a known venue, a positive finite rate, once each."""
    limits: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        name = name.strip().lower()
        if not sep or name not in VENUE_NAMES:
            raise click.BadParameter(
                f"{value!r} is not VENUE=N with VENUE one of {', '.join(VENUE_NAMES)}", ctx, param
            )
        try:
            rate = float(number)
        except ValueError:
            rate = math.nan
        if not math.isfinite(rate) or rate <= 0:
            raise click.BadParameter(
                f"{value!r}: the rate must be a positive number of requests per second",
                ctx,
                param,
            )
        if name in limits:
            raise click.BadParameter(f"{name} is given twice", ctx, param)
        limits[name] = rate
    return limits
