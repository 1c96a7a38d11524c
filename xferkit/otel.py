"""OpenTelemetry traces and metrics for xferkit (the ``otel`` extra).

    from xferkit.otel import OpenTelemetryObserver

    client = xferkit.Client(xt, observers=[OpenTelemetryObserver()])

Spans (tracer ``xferkit``): one ``xferkit.transfer`` span per `Client.transfer` call (and
``xferkit.resume`` per intent of a sweep), with ``xferkit.venue``, ``xferkit.key``,
``xferkit.status``, ``xferkit.attempts`` and ``xferkit.replayed``; one child
``xferkit.attempt`` span per request to the transfer endpoint, with ``xferkit.attempt`` and
``xferkit.outcome`` (``success``, ``duplicate``, ``rejected``, ``not_processed``,
``ambiguous``). Spans are written when the call ends, with the times the events carried, so
they need no context from the caller's task.

Metrics (meter ``xferkit``): counters ``xferkit.transfers`` (by venue, operation and status),
``xferkit.attempts`` (by venue and outcome), ``xferkit.retries`` (attempts after the first,
by venue) and ``xferkit.reconciliations`` (by venue and result); histograms
``xferkit.limiter.wait`` and ``xferkit.journal.write`` (seconds).

Keys are idempotency keys the caller chose; if they carry anything a trace must not, leave
this observer out or filter its spans.
"""

from __future__ import annotations

from collections import defaultdict

from opentelemetry import metrics, trace

from .observe import (
    AttemptFinished,
    Event,
    JournalWritten,
    LimiterWaited,
    Reconciled,
    TransferFinished,
)

__all__ = ["OpenTelemetryObserver"]

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


class OpenTelemetryObserver:
    """Turns `xferkit.observe` events into OpenTelemetry spans and metrics.

    Args:
        tracer_provider: where spans go (default: the global provider).
        meter_provider: where metrics go (default: the global provider).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("xferkit", tracer_provider=tracer_provider)
        meter = metrics.get_meter("xferkit", meter_provider=meter_provider)
        self._transfers = meter.create_counter(
            "xferkit.transfers", description="transfer calls and swept intents, by status"
        )
        self._attempts = meter.create_counter(
            "xferkit.attempts", description="requests to the transfer endpoint, by outcome"
        )
        self._retries = meter.create_counter(
            "xferkit.retries", description="requests to the transfer endpoint after the first"
        )
        self._reconciliations = meter.create_counter(
            "xferkit.reconciliations", description="ledger lookups after an ambiguous attempt"
        )
        self._limiter_wait = meter.create_histogram(
            "xferkit.limiter.wait", unit="s", description="waits for the venue's rate limiter"
        )
        self._journal_write = meter.create_histogram(
            "xferkit.journal.write", unit="s", description="journal writes (claim, save, record)"
        )
        # Attempts of a call still under way, until its TransferFinished makes their parent.
        self._pending: defaultdict[tuple[str, str], list[AttemptFinished]] = defaultdict(list)

    def __call__(self, event: Event) -> None:
        """Record ``event``."""
        if isinstance(event, AttemptFinished):
            self._pending[event.venue, event.key].append(event)
            self._attempts.add(1, {"xferkit.venue": event.venue, "xferkit.outcome": event.outcome})
            if event.attempt > 1:
                self._retries.add(1, {"xferkit.venue": event.venue})
        elif isinstance(event, TransferFinished):
            self._finished(event)
        elif isinstance(event, Reconciled):
            self._reconciliations.add(
                1, {"xferkit.venue": event.venue, "xferkit.result": event.result}
            )
        elif isinstance(event, LimiterWaited):
            self._limiter_wait.record(event.seconds, {"xferkit.venue": event.venue})
        elif isinstance(event, JournalWritten):
            self._journal_write.record(event.seconds, {"xferkit.operation": event.operation})

    def _finished(self, event: TransferFinished) -> None:
        status = "none" if event.status is None else event.status.value
        self._transfers.add(
            1,
            {
                "xferkit.venue": event.venue,
                "xferkit.operation": event.operation,
                "xferkit.status": status,
            },
        )
        attributes: dict[str, str | int | bool] = {
            "xferkit.venue": event.venue,
            "xferkit.key": event.key,
            "xferkit.status": status,
            "xferkit.attempts": event.attempts,
            "xferkit.replayed": event.replayed,
        }
        if event.error is not None:
            attributes["xferkit.error"] = event.error
        span = self._tracer.start_span(
            f"xferkit.{event.operation}",
            start_time=_ns(event.started_at),
            attributes=attributes,
        )
        parent = trace.set_span_in_context(span)
        for attempt in self._pending.pop((event.venue, event.key), []):
            child = self._tracer.start_span(
                "xferkit.attempt",
                context=parent,
                start_time=_ns(attempt.started_at),
                attributes={
                    "xferkit.venue": attempt.venue,
                    "xferkit.key": attempt.key,
                    "xferkit.attempt": attempt.attempt,
                    "xferkit.outcome": attempt.outcome,
                },
            )
            child.end(end_time=_ns(attempt.finished_at))
        span.end(end_time=_ns(event.finished_at))
