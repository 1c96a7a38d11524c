"""What a service embedding xferkit can see: observer events, OpenTelemetry spans and metrics,
and log records in words, on the engine's own loggers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import xferkit
from xferkit import TransferStatus
from xferkit.journal import Journal
from xferkit.observe import (
    AttemptFinished,
    Event,
    JournalWritten,
    LimiterWaited,
    Reconciled,
    TransferFinished,
)
from xferkit.otel import OpenTelemetryObserver
from xferkit.testing import FakeHTX, FakeTransport, Fault, FaultPlan, VirtualClock

from .conftest import HTX_ACCESS_KEY, HTX_SECRET, MakeClient, transfer_args


@pytest.fixture
def otel() -> Iterator[tuple[OpenTelemetryObserver, InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield observer, spans, reader
    meter_provider.shutdown()
    tracer_provider.shutdown()


def metric_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every metric's data points by name."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def total(points: list[Any], **attributes: object) -> float:
    """The sum of the counter points whose attributes include ``attributes``."""
    wanted = {f"xferkit.{k}": v for k, v in attributes.items()}
    return sum(p.value for p in points if all(p.attributes.get(k) == v for k, v in wanted.items()))


async def test_a_lost_answer_makes_a_transfer_span_with_two_attempt_spans_and_metrics(
    make_client: MakeClient,
    plan: FaultPlan,
    otel: tuple[OpenTelemetryObserver, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    """XT executes, the answer is lost, the resend is answered as a duplicate: one
    ``xferkit.transfer`` span (SUCCEEDED, 2 attempts) with two ``xferkit.attempt`` children
    (ambiguous, duplicate), and the counters and histograms the docs list."""
    observer, exporter, reader = otel
    plan.force(Fault.DROP_AFTER)
    async with make_client(observers=[observer]) as client:
        receipt = await client.transfer("xt", **transfer_args(), key="seen")
    assert receipt.status is TransferStatus.SUCCEEDED
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    [parent] = [s for s in spans if s.name == "xferkit.transfer"]
    attempts = sorted(
        (s for s in spans if s.name == "xferkit.attempt"),
        key=lambda s: s.attributes["xferkit.attempt"] if s.attributes else 0,
    )
    assert parent.attributes is not None
    assert parent.attributes["xferkit.venue"] == "xt"
    assert parent.attributes["xferkit.key"] == "seen"
    assert parent.attributes["xferkit.status"] == "SUCCEEDED"
    assert parent.attributes["xferkit.attempts"] == 2
    assert [s.attributes["xferkit.outcome"] for s in attempts if s.attributes] == [
        "ambiguous",
        "duplicate",
    ]
    assert all(
        s.parent is not None and s.parent.span_id == parent.context.span_id for s in attempts
    )
    assert parent.start_time is not None
    assert parent.end_time is not None
    assert all(s.start_time is not None and parent.start_time <= s.start_time for s in attempts)
    points = metric_points(reader)
    assert total(points["xferkit.transfers"], status="SUCCEEDED", venue="xt") == 1
    assert total(points["xferkit.attempts"], outcome="ambiguous") == 1
    assert total(points["xferkit.attempts"], outcome="duplicate") == 1
    assert total(points["xferkit.retries"], venue="xt") == 1
    assert sum(p.count for p in points["xferkit.limiter.wait"]) == 2
    assert sum(p.count for p in points["xferkit.journal.write"]) >= 2  # the claim, the record


async def test_an_htx_ledger_lookup_is_counted_as_a_reconciliation(
    clock: VirtualClock,
    journal: Journal,
    otel: tuple[OpenTelemetryObserver, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    """An HTX answer lost after the venue executed is found in the ledger: one
    ``xferkit.reconciliations`` point with result ``found``, and the transfer span says
    SUCCEEDED."""
    observer, exporter, reader = otel
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER)
    fake = FakeHTX(access_key=HTX_ACCESS_KEY, secret=HTX_SECRET, clock=clock, faults=plan)
    async with (
        httpx.AsyncClient(transport=FakeTransport(fake)) as http_client,
        xferkit.Client(
            xferkit.HTX(HTX_ACCESS_KEY, HTX_SECRET),
            journal=journal,
            http_client=http_client,
            clock=clock,
            observers=[observer],
        ) as client,
    ):
        await client.transfer("htx", **transfer_args(), key="ledger")
    points = metric_points(reader)
    assert total(points["xferkit.reconciliations"], venue="htx", result="found") == 1
    [parent] = [s for s in exporter.get_finished_spans() if s.name == "xferkit.transfer"]
    assert parent.attributes is not None
    assert parent.attributes["xferkit.status"] == "SUCCEEDED"


async def test_observers_see_every_event_and_one_that_raises_changes_nothing(
    make_client: MakeClient, plan: FaultPlan
) -> None:
    """Without OpenTelemetry a plain callable gets the same events; an observer that raises is
    skipped, and the transfer's outcome is unchanged."""
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    plan.force(Fault.DROP_AFTER)
    async with make_client(observers=[broken, seen.append]) as client:
        receipt = await client.transfer("xt", **transfer_args(), key="plain")
        replay = await client.transfer("xt", **transfer_args(), key="plain")
    assert receipt.status is TransferStatus.SUCCEEDED
    kinds = {type(e) for e in seen}
    assert {AttemptFinished, TransferFinished, LimiterWaited, JournalWritten} <= kinds
    assert Reconciled not in kinds  # XT settles by its duplicate answer, not a ledger
    finished = [e for e in seen if isinstance(e, TransferFinished)]
    assert [(e.status, e.attempts, e.replayed) for e in finished] == [
        (TransferStatus.SUCCEEDED, 2, False),
        (TransferStatus.SUCCEEDED, 2, True),
    ]
    assert replay.replayed


async def test_log_records_come_from_each_layers_logger_in_words(
    make_client: MakeClient, plan: FaultPlan, caplog: pytest.LogCaptureFixture
) -> None:
    """INFO records name their layer (``xferkit.engine``) and say what happened in words, not
    class names such as ``notprocessed`` or ``Absent()``."""
    caplog.set_level(logging.INFO, logger="xferkit")
    plan.force(Fault.CONNECT_REFUSED)
    async with make_client() as client:
        await client.transfer("xt", **transfer_args(), key="words")
    attempts = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert attempts
    assert {r.name for r in attempts} == {"xferkit.engine"}
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "was not processed" in text
    assert "notprocessed" not in text
    assert "not_processed" not in text
