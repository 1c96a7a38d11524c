"""The command line owns logging: quiet by default, ``-v`` for INFO, ``--debug`` for DEBUG.

The library only logs (its package logger has a `logging.NullHandler`, so Python's last-resort
handler never prints its warnings). The command decides what reaches the terminal: nothing by
default, because outcomes are reported by the command's own tables and ``Error:`` lines, and
warnings such as a spent retry budget would otherwise be printed over the progress bar; with
``-v``/``--debug``, rich's handler on stderr, which a live progress bar keeps above itself.

The CLI also listens to the library's per-attempt INFO records (`AttemptListener`), whatever
the terminal shows, so the progress bar counts retries as they are sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import click
from rich.console import Console
from rich.logging import RichHandler

__all__ = [
    "EXIT_UNEXPECTED",
    "LIBRARY_LOGGER",
    "AttemptListener",
    "LoggingGroup",
    "listening",
    "verbosity_options",
]

LIBRARY_LOGGER = "xferkit"
EXIT_UNEXPECTED = 2
"""Exit status after an unexpected error: the command could not run as it should."""

_F = Callable[..., object]
_HANDLER_KEY = "xferkit.log_handler"
_LEVEL_KEY = "xferkit.log_level"


class AttemptListener(logging.Handler):
    """Call ``on_attempt(key, attempt)`` for each request the engine reports it sent.

    It reads the structured fields of the engine's attempt records (``xferkit_key`` and
    ``attempt``); records without them are ignored.
    """

    def __init__(self, on_attempt: Callable[[str, int], None]) -> None:
        super().__init__(level=logging.INFO)
        self._on_attempt = on_attempt

    def emit(self, record: logging.LogRecord) -> None:
        """Pass on an attempt record; anything else is not for us."""
        key = getattr(record, "xferkit_key", None)
        attempt = getattr(record, "attempt", None)
        if isinstance(key, str) and isinstance(attempt, int):
            self._on_attempt(key, attempt)


_SILENT = logging.CRITICAL + 1


def _fit_logger_level(logger: logging.Logger, before: int) -> None:
    """Let the logger create exactly the records some attached handler wants."""
    levels = [h.level for h in logger.handlers if not isinstance(h, logging.NullHandler)]
    wanted = [level for level in levels if level < _SILENT]
    logger.setLevel(min(wanted) if wanted else before)


@contextlib.contextmanager
def listening(handler: logging.Handler) -> Iterator[None]:
    """Let ``handler`` see the library's records while the context lasts (an attempt listener).

    Lowers the package logger's level just enough for it, and restores it after.
    """
    logger = logging.getLogger(LIBRARY_LOGGER)
    before = logger.level
    logger.addHandler(handler)
    _fit_logger_level(logger, before)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        _fit_logger_level(logger, before)


class LoggingGroup(click.Group):
    """A group that owns the library's logging for the length of one invocation.

    The package logger stops propagating while a command runs: the command is the
    application, and a root handler someone configured must not print over its output. Rich's
    handler on stderr is attached silent; ``-v``/``--debug`` (on the group or the command)
    open it up once parsed. Everything is given back afterwards, so in-process callers (tests,
    click's runner) find logging as it was. An unexpected exception is one ``Error:`` line
    (exit status 2), or its traceback with ``--debug``.
    """

    def invoke(self, ctx: click.Context) -> object:
        """Run the command with the CLI's logging in place."""
        logger = logging.getLogger(LIBRARY_LOGGER)
        before, propagate = logger.level, logger.propagate
        handler = RichHandler(
            level=_SILENT, console=Console(stderr=True), show_path=False, rich_tracebacks=True
        )
        ctx.meta[_HANDLER_KEY] = handler
        logger.propagate = False
        logger.addHandler(handler)
        level = ctx.meta.get(_LEVEL_KEY)
        if isinstance(level, int):  # the group's own -v/--debug, parsed before this
            _open_up(handler, level)
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            # A bug, or a failure nothing foresaw: one line, like every other error, unless
            # --debug asked for the detail (then Python's traceback, through the usual path).
            if handler.level <= logging.DEBUG:
                raise
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc} (run the command again with "
                "--debug to see where; the journal keeps what was recorded)",
                err=True,
            )
            ctx.exit(EXIT_UNEXPECTED)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(before)
            logger.propagate = propagate


def _set_level(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Open the terminal handler to the most verbose level asked for so far."""
    if param.name == "debug":
        level = logging.DEBUG if value else None
    else:
        count = value if isinstance(value, int) else 0
        level = None if count == 0 else logging.INFO if count == 1 else logging.DEBUG
    if level is None:
        return
    meta = ctx.find_root().meta
    meta[_LEVEL_KEY] = min(level, meta.get(_LEVEL_KEY, level))
    handler = meta.get(_HANDLER_KEY)
    if isinstance(handler, RichHandler):
        _open_up(handler, level)


def _open_up(handler: RichHandler, level: int) -> None:
    """Show records from ``level`` up on the terminal (never less than already shown)."""
    if handler.level <= level:
        return
    handler.setLevel(level)
    logger = logging.getLogger(LIBRARY_LOGGER)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)


def verbosity_options(f: _F) -> _F:
    """``-v/--verbose`` (INFO; ``-vv`` DEBUG) and ``--debug`` (DEBUG), on a group or a command."""
    f = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_set_level,
        help="Show the library's DEBUG log records on stderr.",
    )(f)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_set_level,
        help="Show the library's INFO log records on stderr (-vv: DEBUG too).",
    )(f)
