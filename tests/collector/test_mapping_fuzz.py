"""Property-based fuzzing of the OTLP → rows mapping, and its round trip through the decoders.

Whatever a producer sends, ``map_request`` returns; every span is accounted for once;
every row fits its column; the protobuf and OTLP/JSON forms of a request map to the same
rows. Hypothesis runs derandomized, so CI sees the same examples on every run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector_service.ingest.attributes import MAX_LABEL_CHARS, MAX_RUN_ID_LENGTH
from collector_service.ingest.decode import decode_json, decode_protobuf
from collector_service.ingest.mapping import map_request, map_run_span
from collector_service.ingest.values import MAX_DEPTH, TooDeep, from_any_value, json_depth
from collector_service.store.rows import MappedBatch, RunRow, StepRow, compact_json
from tests.otlp_strategies import (
    FOUND_BY_FUZZING,
    all_spans,
    ci_settings,
    otlp_json,
    requests,
)
from xray_otel import conventions as c

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
INTEGER_COLUMNS = (c.STEP_SEQ, c.STEP_CANDIDATES_IN, c.STEP_CANDIDATES_OUT)


def expected_kind(span: Span) -> str | None:
    """The contract's rule: a step type makes a step, else a pipeline makes a run span."""
    keys = {kv.key for kv in span.attributes}
    if c.STEP_TYPE in keys:
        return "step"
    return "run" if c.RUN_PIPELINE in keys else None


def usable_identity(span: Span) -> bool:
    return (len(span.trace_id) == 16 and any(span.trace_id)
            and len(span.span_id) == 8 and any(span.span_id))


def sent_values(span: Span) -> dict[str, Any]:
    """The span's attributes as plain values (the last of repeated keys wins)."""
    values: dict[str, Any] = {}
    for kv in span.attributes:
        try:
            values[kv.key] = from_any_value(kv.value)
        except TooDeep:
            values[kv.key] = None
    return values


def is_json_null(value: Any) -> bool:
    """Whether ``value`` is JSON text spelling ``null`` (stored as SQL NULL, nothing lost)."""
    try:
        return isinstance(value, str | bytes) and json.loads(value) is None
    except ValueError:
        return False


def assert_storable_text(value: str | None) -> None:
    if value is not None:
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogates: Postgres text is UTF-8


def assert_storable_json(value: Any, max_depth: int) -> None:
    """The value is JSON that ``jsonb`` accepts: finite numbers, no NUL, valid UTF-8."""
    compact_json(value).encode("utf-8")
    json.dumps(value, allow_nan=False)
    for text in strings_in(value):
        assert "\x00" not in text
    assert json_depth(value) <= max_depth


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def check_step(step: StepRow, span: Span) -> None:
    assert (step.trace_id, step.span_id) == (span.trace_id.hex(), span.span_id.hex())
    assert step.step_type in c.STEP_TYPES
    assert step.seq is None or 1 <= step.seq <= 2**31 - 1
    for count in (step.candidates_in, step.candidates_out):
        assert count is None or 0 <= count < 2**63
    assert 0 < len(step.step_name) <= MAX_LABEL_CHARS
    assert all(len(v) <= MAX_LABEL_CHARS for v in (step.pipeline, step.entity) if v)
    for text in (step.step_name, step.pipeline, step.entity, step.why, step.error):
        assert_storable_text(text)
    assert step.why_json is None or isinstance(step.why_json, dict)
    for column in (step.why_json, step.input, step.output):
        assert_storable_json(column, MAX_DEPTH)
    assert_storable_json(step.metrics, 1)
    for name, metric in step.metrics.items():
        assert name and not isinstance(metric, bool) and math.isfinite(metric)
    assert step.parent_span_id is None or len(step.parent_span_id) == 16
    check_common(step, span)
    kept_somewhere(step, span)


def check_common(row: StepRow | RunRow, span: Span) -> None:
    assert 0 < len(row.run_id) <= MAX_RUN_ID_LENGTH or row.run_id == span.trace_id.hex()
    assert_storable_text(row.run_id)
    assert_storable_text(row.service_name)
    assert row.status in ("ok", "error") and (row.status == "error" or row.error is None)
    assert row.started_at is not None and row.ended_at is not None
    assert row.started_at <= row.ended_at
    assert_storable_json(row.attributes, MAX_DEPTH + 1)
    assert_storable_json([a.as_json() for a in row.adjustments], 2)


def kept_somewhere(step: StepRow, span: Span) -> None:
    """Nothing a producer sent is silently lost: a value left out of its column is kept."""
    sent = sent_values(span)
    names = {a.attribute for a in step.artifacts}
    for key, value in sent.items():
        if value is None or "\x00" in key:
            continue
        if key.startswith(c.ARTIFACT_PREFIX):
            assert key in names
        elif key.startswith(c.STEP_METRIC_PREFIX):
            assert key.removeprefix(c.STEP_METRIC_PREFIX) in step.metrics or key in step.attributes
        elif key in INTEGER_COLUMNS:
            column = {c.STEP_SEQ: step.seq, c.STEP_CANDIDATES_IN: step.candidates_in,
                      c.STEP_CANDIDATES_OUT: step.candidates_out}[key]
            assert column is not None or key in step.attributes
        elif key == c.STEP_WHY_JSON and not is_json_null(value):
            assert step.why_json is not None or key in step.attributes
        elif key not in (*c.RUN_ATTRIBUTES, *c.STEP_ATTRIBUTES):
            assert key in step.attributes


def check_accounting(req: ExportTraceServiceRequest, batch: MappedBatch) -> None:
    """Every span is a step, a run span, ignored or rejected: exactly one of them."""
    steps, run_spans, rejected, ignored = [], [], [], 0
    for sent, _resource in all_spans(req):
        kind = expected_kind(sent)
        if kind is None:
            ignored += 1
        elif not usable_identity(sent):
            rejected.append((sent.trace_id.hex(), sent.span_id.hex()))
        elif kind == "step":
            steps.append(sent)
        else:
            run_spans.append(sent)
    assert batch.ignored_spans == ignored
    assert [(r.trace_id, r.span_id) for r in batch.rejected] == rejected
    assert len(batch.steps) == len(steps)
    for step, sent in zip(batch.steps, steps, strict=True):
        check_step(step, sent)
    first_run_span: dict[str, Span] = {}
    for sent in run_spans:
        first_run_span.setdefault(map_run_span(sent, None, RECEIVED).run_id, sent)
    runs = {run.run_id: run for run in batch.runs}
    assert len(runs) == len(batch.runs)
    assert set(runs) == set(first_run_span) | {s.run_id for s in batch.steps}
    for run_id, run in runs.items():
        if run_id in first_run_span:
            assert run.span_id == first_run_span[run_id].span_id.hex()
            check_common(run, first_run_span[run_id])
        else:
            assert (run.status, run.span_id) == ("pending", None)


@ci_settings(150)
@given(requests())
@example(FOUND_BY_FUZZING[0])
@example(FOUND_BY_FUZZING[1])
@example(FOUND_BY_FUZZING[2])
@example(FOUND_BY_FUZZING[3])
def test_mapping_never_raises_and_accounts_for_every_span(
        req: ExportTraceServiceRequest) -> None:
    check_accounting(req, map_request(req, RECEIVED))


@ci_settings(60)
@given(requests())
@example(FOUND_BY_FUZZING[0])
def test_protobuf_and_otlp_json_forms_map_to_the_same_rows(
        req: ExportTraceServiceRequest) -> None:
    expected = map_request(req, RECEIVED)
    assert map_request(decode_protobuf(req.SerializeToString()), RECEIVED) == expected
    assert map_request(decode_json(otlp_json(req)), RECEIVED) == expected
