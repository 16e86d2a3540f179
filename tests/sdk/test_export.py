"""The export path: counted drops on overflow, exporter failures, bounded flush/shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import xray_otel as xray
from xray_otel._export import BoundedBatchSpanProcessor, CountingSpanExporter
from xray_otel._stats import Counters


class Recording(SpanExporter):
    """Records batches; can block until released, fail, or raise."""

    def __init__(
        self,
        *,
        block: bool = False,
        result: SpanExportResult = SpanExportResult.SUCCESS,
        raise_: bool = False,
    ) -> None:
        self.released = threading.Event()
        if not block:
            self.released.set()
        self.result = result
        self.raise_ = raise_
        self.batches: list[int] = []
        self.shutdowns = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.released.wait(30)
        self.batches.append(len(spans))
        if self.raise_:
            raise ConnectionError("exporter exploded")
        return self.result

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.released.set()


def _pipeline(processor: BoundedBatchSpanProcessor) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider


@xray.step("filter", name="f")
def keep(items: list[int]) -> list[int]:
    xray.record(candidates_in=len(items))
    return items[:1]


def test_spans_are_exported_and_counted() -> None:
    counters, exporter = Counters(), Recording()
    processor = BoundedBatchSpanProcessor(exporter, counters=counters, schedule_delay_millis=50)
    provider = _pipeline(processor)
    with xray.run("p", tracer_provider=provider):
        for _ in range(10):
            assert keep([1, 2]) == [1]
    assert processor.force_flush(5000) is True
    assert counters.snapshot().exported == 11 and sum(exporter.batches) == 11
    assert processor.shutdown_within(5) is True


def test_queue_overflow_drops_are_counted_and_never_block() -> None:
    counters, exporter = Counters(), Recording(block=True)
    processor = BoundedBatchSpanProcessor(
        exporter,
        counters=counters,
        max_queue_size=20,
        max_export_batch_size=5,
        schedule_delay_millis=10,
    )
    provider = _pipeline(processor)
    started = time.monotonic()
    with xray.run("p", tracer_provider=provider):
        results = [keep([i, i]) for i in range(200)]
    elapsed = time.monotonic() - started
    assert results == [[i] for i in range(200)]
    assert elapsed < 5  # the blocked exporter never slowed the pipeline down
    stats = counters.snapshot()
    # 201 spans: at most 20 queued + one batch of 5 stuck in the exporter, the rest dropped
    assert 201 - 25 <= stats.dropped <= 201 - 20, stats
    exporter.released.set()
    assert processor.force_flush(5000) is True
    stats = counters.snapshot()
    assert stats.exported + stats.dropped == 201, stats


def test_exporter_raising_is_counted_as_failed_not_raised() -> None:
    counters = Counters()
    processor = BoundedBatchSpanProcessor(
        Recording(raise_=True), counters=counters, schedule_delay_millis=10
    )
    provider = _pipeline(processor)
    error = ValueError("the pipeline's own")
    with pytest.raises(ValueError) as caught, xray.run("p", tracer_provider=provider):
        keep([1])
        raise error
    assert caught.value is error
    assert processor.force_flush(5000) is True
    assert counters.snapshot().failed == 2
    processor.shutdown_within(1)


def test_failed_exports_pause_the_worker_instead_of_retrying_hot() -> None:
    counters, inner = Counters(), Recording(result=SpanExportResult.FAILURE)
    exporter = CountingSpanExporter(inner, counters)
    batch = [ReadableSpan(name=f"s{i}") for i in range(3)]
    exporter.export(batch)  # fails: starts a 1 s cool-down
    resumed = threading.Event()

    def resume() -> None:
        resumed.set()
        exporter.resume_now()

    threading.Timer(0.2, resume).start()
    exporter.export(batch)  # waits for the cool-down, ended early by resume_now
    assert resumed.is_set()  # the second export could not start before the resume
    assert inner.batches == [3, 3] and counters.snapshot().failed == 6


def test_force_flush_honours_its_timeout_with_a_stuck_exporter() -> None:
    counters, exporter = Counters(), Recording(block=True)
    processor = BoundedBatchSpanProcessor(exporter, counters=counters, schedule_delay_millis=10_000)
    provider = _pipeline(processor)
    with xray.run("p", tracer_provider=provider):
        keep([1])
    started = time.monotonic()
    assert processor.force_flush(timeout_millis=300) is False
    assert time.monotonic() - started < 2
    exporter.released.set()
    assert processor.force_flush(timeout_millis=5000) is True
    assert counters.snapshot().exported == 2


def test_shutdown_is_bounded_idempotent_and_counts_abandoned_spans() -> None:
    counters, exporter = Counters(), Recording(block=True)
    processor = BoundedBatchSpanProcessor(
        exporter, counters=counters, max_export_batch_size=1, schedule_delay_millis=10
    )
    provider = _pipeline(processor)
    with xray.run("p", tracer_provider=provider):
        for _ in range(5):
            keep([1])
    time.sleep(0.1)  # the worker is now stuck in export() with one span
    started = time.monotonic()
    assert processor.shutdown_within(0.5) is False
    assert time.monotonic() - started < 2
    assert exporter.shutdowns == 1  # aborted: the exporter was told to stop its retries
    assert processor.shutdown_within(0.5) is True  # idempotent
    processor.shutdown()
    time.sleep(0.2)
    stats = counters.snapshot()
    assert stats.dropped + stats.exported == 6, stats  # nothing lost without being counted
    with xray.run("p", tracer_provider=provider):
        keep([1])
    assert counters.snapshot().dropped == stats.dropped + 2  # after shutdown: dropped, counted
