"""Large values: artifacts keep a larger limit, and no export request outgrows a receiver."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import xray_otel as xray
from tests.sdk.conftest import Traced, make_traced
from xray_otel import conventions as c
from xray_otel._export import MAX_REQUEST_BYTES, CountingSpanExporter, estimated_size
from xray_otel._stats import Counters


def test_artifacts_get_their_own_larger_limit() -> None:
    traced: Traced = make_traced()
    raw = "r" * 600_000
    try:
        with xray.run("p", tracer_provider=traced.provider), xray.step("search", name="s"):
            xray.record(why="w" * 600_000, artifacts={"raw_response": raw})
        attrs = traced.attrs("s")
    finally:
        traced.provider.shutdown()
    assert attrs[c.artifact_attribute("raw_response")] == raw
    assert len(str(attrs[c.STEP_WHY]).encode()) <= 64 * 1024
    assert list(attrs[c.SDK_TRUNCATED]) == [c.STEP_WHY]


def test_artifacts_over_their_limit_are_truncated_too() -> None:
    traced = make_traced(max_artifact_bytes=100_000)
    try:
        with xray.run("p", tracer_provider=traced.provider), xray.step("search", name="s"):
            xray.record(artifacts={"raw": b"x" * 200_000})
        attrs = traced.attrs("s")
    finally:
        traced.provider.shutdown()
    assert len(attrs[c.artifact_attribute("raw")]) <= 100_000
    assert list(attrs[c.SDK_TRUNCATED]) == [c.artifact_attribute("raw")]


class RecordingExporter(SpanExporter):
    def __init__(self) -> None:
        self.requests: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.requests.append(sum(estimated_size(s) for s in spans))
        return SpanExportResult.SUCCESS


def test_a_batch_of_large_spans_is_split_into_requests_under_the_budget() -> None:
    traced = make_traced()
    try:
        with xray.run("p", tracer_provider=traced.provider):
            for i in range(120):
                with xray.step("llm", name=f"s{i}"):
                    xray.record(why="w" * 60_000, artifacts={"prompt": "p" * 100_000})
        spans = traced.spans()
    finally:
        traced.provider.shutdown()
    recording = RecordingExporter()
    counters = Counters()
    result = CountingSpanExporter(recording, counters).export(spans)
    assert result is SpanExportResult.SUCCESS
    assert len(recording.requests) > 1
    assert max(recording.requests) <= MAX_REQUEST_BYTES
    assert sum(recording.requests) == sum(estimated_size(s) for s in spans)
    assert counters.snapshot().exported == len(spans)


def test_a_failed_request_fails_the_whole_export() -> None:
    class FailSecond(RecordingExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            super().export(spans)
            return (SpanExportResult.FAILURE if len(self.requests) == 2
                    else SpanExportResult.SUCCESS)

    traced = make_traced()
    try:
        with xray.run("p", tracer_provider=traced.provider):
            for i in range(60):
                with xray.step("llm", name=f"s{i}"):
                    xray.record(artifacts={"prompt": "p" * 200_000})
        spans = traced.spans()
    finally:
        traced.provider.shutdown()
    exporter = FailSecond()
    counters = Counters()
    assert CountingSpanExporter(exporter, counters).export(spans) is SpanExportResult.FAILURE
    assert len(exporter.requests) == 2
    assert counters.snapshot().failed == len(spans)
