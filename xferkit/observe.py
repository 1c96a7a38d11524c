"""What xferkit reports while it works, for a service's metrics and traces.

Pass observers to the client (``Client(..., observers=[...])``); each is called with every
event below as it happens, on the event loop, so it must be quick and must not block. An
observer that raises is logged (``xferkit.observe``, DEBUG) and never disturbs a transfer: a
status is a promise about money, and no metric is worth breaking it.

`xferkit.otel.OpenTelemetryObserver` turns these events into OpenTelemetry spans and metrics
(the ``otel`` extra). Without it, any callable taking an event will do, e.g. one that feeds
Prometheus counters.

Events:

* `AttemptFinished`: one request to the venue's transfer endpoint ended, with its outcome
  class (``success``, ``duplicate``, ``rejected``, ``not_processed``, ``ambiguous``).
* `TransferFinished`: one `Client.transfer` call, or one intent of a `Client.resume` sweep,
  ended, with the status it left (``None`` when it ended otherwise, e.g. cancelled).
* `Reconciled`: an ambiguous HTX attempt was looked up in the ledger (``found``, ``absent``,
  ``unclear``).
* `LimiterWaited`: how long an attempt waited for the venue's rate limiter.
* `JournalWritten`: how long a journal write took (claim, save, record).

Times are Unix seconds (``started_at``, ``finished_at``) and durations seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeAlias

import attrs

from ._models import TransferStatus

__all__ = [
    "AttemptFinished",
    "Event",
    "JournalWritten",
    "LimiterWaited",
    "Observer",
    "Reconciled",
    "TransferFinished",
]

_log = logging.getLogger("xferkit.observe")


@attrs.frozen(kw_only=True)
class AttemptFinished:
    """One request to the transfer endpoint ended; ``outcome`` is its class."""

    venue: str
    key: str
    attempt: int
    outcome: str
    started_at: float
    finished_at: float


@attrs.frozen(kw_only=True)
class TransferFinished:
    """A transfer call (``operation="transfer"``) or a sweep's intent (``"resume"``) ended.

    ``status`` is what the journal holds (``None`` if the call ended otherwise, e.g. it was
    cancelled: ``error`` names why); ``attempts`` counts every attempt the intent has had.
    """

    venue: str
    key: str
    operation: str
    status: TransferStatus | None
    attempts: int
    replayed: bool
    started_at: float
    finished_at: float
    error: str | None = None


@attrs.frozen(kw_only=True)
class Reconciled:
    """An ambiguous attempt was looked up in the venue's ledger; ``result`` is ``found``,
    ``absent`` or ``unclear``."""

    venue: str
    key: str
    result: str


@attrs.frozen(kw_only=True)
class LimiterWaited:
    """An attempt waited ``seconds`` for the venue's client-side rate limiter."""

    venue: str
    seconds: float


@attrs.frozen(kw_only=True)
class JournalWritten:
    """A journal write (``operation``: ``claim``, ``save`` or ``record``) took ``seconds``."""

    operation: str
    seconds: float


Event: TypeAlias = AttemptFinished | TransferFinished | Reconciled | LimiterWaited | JournalWritten
Observer: TypeAlias = Callable[[Event], object]
"""Anything called with each event; its return value is ignored."""


class Emitter:
    """Hands events to the observers; one that raises is logged and skipped."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers = tuple(observers)

    def __bool__(self) -> bool:
        """Whether anyone listens: callers skip building events nobody reads."""
        return bool(self._observers)

    def emit(self, event: Event) -> None:
        """Give ``event`` to every observer."""
        for observer in self._observers:
            try:
                observer(event)
            except Exception:  # noqa: BLE001 - an observer must never break a transfer
                _log.debug("observer %r failed on %r", observer, event, exc_info=True)
