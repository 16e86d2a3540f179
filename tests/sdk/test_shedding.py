"""Load shedding: with the collector failing and the queue full, X-Ray builds no spans.

Such spans would be dropped on arrival, so building them would be pure cost. These tests
check when shedding starts (full queue *and* a failing exporter, on a provider X-Ray
created), what a shed step still does (runs the pipeline's code unchanged, takes its
seq, counts as dropped, leaves other spans alone) and that it stops when the collector
is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import xray_otel as xray
from xray_otel import _export, _setup, _shed
from xray_otel._export import BoundedBatchSpanProcessor
from xray_otel._stats import Counters
from xray_otel.conventions import RUN_ID, STEP_SEQ

from .test_export import Recording


class Switchable(SpanExporter):
    """Fails until told to succeed; keeps what it exported."""

    def __init__(self) -> None:
        self.result = SpanExportResult.FAILURE
        self.exported: list[ReadableSpan] = []
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock:
            if self.result is SpanExportResult.SUCCESS:
                self.exported.extend(spans)
            return self.result


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _shed_steadily(provider: TracerProvider, produce: Callable[[], object]) -> None:
    """``produce()`` spans until X-Ray sheds, and still sheds once the export worker had
    time to take its next batch (which frees room in the queue once, after the first
    failure; with the long cool-down of ``failing_setup`` it then waits)."""

    def sheds_after_the_workers_turn() -> bool:
        produce()
        if not _shed.shedding(provider):
            return False
        time.sleep(0.05)  # the worker's turn
        return _shed.shedding(provider)

    _wait_for(sheds_after_the_workers_turn, "shedding")


@pytest.fixture
def failing_setup(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> tuple[TracerProvider, Switchable]:
    """``configure()`` with a small queue and an exporter that fails until switched.

    The cool-down is made long, so the queue never reopens mid-test: only ``flush()``
    retries.
    """
    monkeypatch.setattr(_export, "MIN_COOLDOWN_S", 3600.0)
    exporter = Switchable()
    provider = xray.configure(
        span_exporter=exporter, set_global=False, max_queue_size=8, max_export_batch_size=4,
        schedule_delay_millis=10,
    )
    return provider, exporter


@xray.step("filter", name="keep")
def keep(items: list[int]) -> list[int]:
    xray.record(candidates_in=len(items), candidates_out=1, why="first only")
    return items[:1]


def _runs(provider: TracerProvider, count: int) -> list[list[int]]:
    results = []
    for i in range(count):
        with xray.run("shed", entity=str(i), tracer_provider=provider):
            results.append(keep([i, i + 1]))
    return results


def test_saturated_needs_a_full_queue_and_a_failing_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_export, "STRUGGLING_AFTER_S", 3600.0)
    counters, exporter = Counters(), Recording(block=True)
    processor = BoundedBatchSpanProcessor(
        exporter, counters=counters, max_queue_size=4, max_export_batch_size=1,
        schedule_delay_millis=10,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    assert processor.saturated() is False
    _runs(provider, 1)
    _wait_for(lambda: processor.exporter._in_flight > 0, "the export to start")
    _runs(provider, 3)  # fills the queue behind the stuck export
    assert processor._pending == 4
    assert processor.saturated() is False  # full, but a slow export is not a dead collector
    monkeypatch.setattr(_export, "STRUGGLING_AFTER_S", 0.0)
    assert processor.saturated() is True  # the export has now run "too long"
    exporter.released.set()
    assert processor.force_flush(5000) is True
    assert processor.saturated() is False  # drained and succeeding
    processor.shutdown_within(1)


def test_a_failing_exporter_with_room_in_the_queue_does_not_shed() -> None:
    counters, inner = Counters(), Recording(result=SpanExportResult.FAILURE)
    processor = BoundedBatchSpanProcessor(inner, counters=counters, schedule_delay_millis=10)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    _runs(provider, 2)
    assert processor.force_flush(5000) is True
    assert processor.exporter.failing() is True
    assert processor.saturated() is False  # room left: spans are still worth building
    processor.shutdown_within(1)


def test_shed_steps_run_unchanged_count_as_dropped_and_stop_when_the_collector_returns(
    failing_setup: tuple[TracerProvider, Switchable],
) -> None:
    provider, exporter = failing_setup
    assert _setup._current is not None and _setup._current.owns_provider
    _shed_steadily(provider, lambda: _runs(provider, 1))

    before = xray.stats()
    user_tracer = provider.get_tracer("user-code")
    with xray.run("shed", tracer_provider=provider) as run:
        assert run.span.is_recording() is False
        assert keep([7, 8, 9]) == [7]  # the pipeline's result is untouched
        with xray.step("rank") as shed_step:
            assert shed_step.span.is_recording() is False
            shed_step.record(candidates_in=3, why="nowhere to go")  # a quiet no-op
            with user_tracer.start_as_current_span("http-call") as user_span:
                assert user_span.is_recording()  # not X-Ray's span: sampling unchanged
                assert user_span.get_span_context().trace_flags.sampled
        with pytest.raises(KeyError, match="own"), xray.step("llm"):
            raise KeyError("own")  # the user's exception comes out unchanged
        with xray.step("other"):
            pass
    delta = xray.stats() - before
    # The run and its four steps were shed; the user's span reached the full queue.
    assert delta.dropped == 1 + 4 + 1, delta
    assert delta.internal_errors == 0 and delta.rejected_values == 0, delta
    shed_run_id = run.id

    exporter.result = SpanExportResult.SUCCESS  # the collector is back
    assert xray.flush(timeout=5) is True
    assert _shed.shedding(provider) is False
    with xray.run("shed", tracer_provider=provider) as recovered:
        assert keep([1, 2]) == [1]
        assert keep([3, 4]) == [3]
    assert xray.flush(timeout=5) is True
    by_run = [s for s in exporter.exported if (s.attributes or {}).get(RUN_ID) == recovered.id]
    assert sorted(s.name for s in by_run) == ["keep", "keep", "shed"]
    assert sorted((s.attributes or {}).get(STEP_SEQ, 0) for s in by_run) == [0, 1, 2]
    assert not [s for s in exporter.exported if (s.attributes or {}).get(RUN_ID) == shed_run_id]


def test_seq_keeps_counting_through_shed_steps(
    failing_setup: tuple[TracerProvider, Switchable],
) -> None:
    provider, exporter = failing_setup
    calls = 0

    def call_keep() -> bool:
        nonlocal calls
        calls += 1
        return keep([calls]) == [calls]

    with xray.run("long", tracer_provider=provider) as run:
        _shed_steadily(provider, call_keep)
        shed_seqs = {calls + 1, calls + 2}
        call_keep(), call_keep()
        exporter.result = SpanExportResult.SUCCESS
        assert xray.flush(timeout=5) is True
        call_keep()  # recorded again
    assert xray.flush(timeout=5) is True
    seqs = {
        (s.attributes or {}).get(STEP_SEQ)
        for s in exporter.exported
        if (s.attributes or {}).get(RUN_ID) == run.id and s.name == "keep"
    }
    assert calls in seqs  # the step after the recovery carries its true position
    assert not seqs & shed_seqs  # the shed steps left a gap, nothing renumbered


def test_a_provider_x_ray_did_not_create_is_never_shed(configured: None) -> None:
    provider = TracerProvider(shutdown_on_exit=False)  # others may export it elsewhere
    xray.configure(
        span_exporter=Switchable(), tracer_provider=provider, max_queue_size=8,
        max_export_batch_size=4, schedule_delay_millis=10,
    )
    setup = _setup._current
    assert setup is not None and setup.batch is not None
    _wait_for(lambda: bool(_runs(provider, 1)) and setup.batch.saturated(), "a full queue")
    assert _shed.shedding(provider) is False
    with xray.run("mine", tracer_provider=provider) as run, xray.step("rank") as step:
        assert run.span.is_recording() and step.span.is_recording()
