"""Map an OTLP export request to X-Ray rows. Pure: no I/O, no clock, no globals.

A span with ``xray.step.type`` is a step; a span with ``xray.run.pipeline`` and no step
type is a run span; every other span is not X-Ray data and is ignored. Steps also
yield a provisional run row, so a run exists as soon as any of its steps arrives; the
run span completes it whenever it comes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collector_service.ingest.attributes import (
    MAX_LABEL_CHARS,
    MAX_RUN_ID_LENGTH,
    PREFIXES,
    SpanAttributes,
)
from collector_service.ingest.plain_step import read_plain_step
from collector_service.ingest.values import TooDeep, clean_text, from_any_value
from collector_service.store.rows import (
    Adjustment,
    ArtifactValue,
    MappedBatch,
    RejectedSpan,
    RunRow,
    StepRow,
)
from xray_otel import conventions as c

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_NESTED = frozenset({"array_value", "kvlist_value"})


def map_request(request: ExportTraceServiceRequest, received_at: datetime) -> MappedBatch:
    """Every step, run and rejected span in ``request``; ``received_at`` fills missing times."""
    steps: list[StepRow] = []
    runs: list[RunRow] = []
    rejected: list[RejectedSpan] = []
    ignored = 0
    for resource_spans in request.resource_spans:
        service_name = _resource_text(resource_spans.resource.attributes, c.SERVICE_NAME)
        service_version = _resource_text(resource_spans.resource.attributes,
                                         c.SERVICE_VERSION)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                kind = _classify(span)
                if kind is None:
                    ignored += 1
                    continue
                problem = _identity_problem(span)
                if problem is not None:
                    rejected.append(RejectedSpan(span.trace_id.hex(), span.span_id.hex(),
                                                 problem))
                elif kind == "step":
                    steps.append(map_step(span, service_name, received_at))
                else:
                    runs.append(map_run_span(span, service_name, received_at, service_version))
    return MappedBatch(
        runs=tuple(merge_runs(runs, steps)),
        steps=tuple(steps),
        rejected=tuple(rejected),
        ignored_spans=ignored,
    )


def _classify(span: Span) -> str | None:
    kind = None
    for kv in span.attributes:  # X-Ray's SDK sends the step type first
        if kv.key == c.STEP_TYPE:
            return "step"
        if kv.key == c.RUN_PIPELINE:
            kind = "run"
    return kind


def _identity_problem(span: Span) -> str | None:
    if len(span.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
        return "trace_id must be 16 bytes and not all zero"
    if len(span.span_id) != 8 or span.span_id == _ZERO_SPAN:
        return "span_id must be 8 bytes and not all zero"
    return None


def map_step(span: Span, service_name: str | None, received_at: datetime) -> StepRow:
    """The ``xray_steps`` row for one step span."""
    plain = _plain_step(span, service_name)
    if plain is not None:
        return plain
    attrs = _read_attributes(span.attributes)
    trace_id = span.trace_id.hex()
    step_type = read_step_type(attrs)
    started_at, ended_at = _times(span, received_at, attrs)
    exception = _last_exception(span)
    status, error = _status(span, exception)
    artifacts = tuple(artifact_value(name, value) for name, value
                      in attrs.prefixed(c.ARTIFACT_PREFIX).items()
                      if value is not None) if attrs.any_prefixed else ()
    return StepRow(
        run_id=_run_id(attrs, trace_id),
        step_name=attrs.label(c.STEP_NAME) or _span_name(span, attrs) or step_type,
        step_type=step_type,
        **attrs.step_columns(),
        status=status,
        error=error,
        started_at=started_at,
        ended_at=ended_at,
        trace_id=trace_id,
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() if len(span.parent_span_id) == 8 else None,
        service_name=service_name,
        attributes=_with_exception_details(attrs.remaining(), exception),
        adjustments=tuple(attrs.adjustments),
        artifacts=artifacts,
        encoded=attrs.encoded,
    )


def _plain_step(span: Span, service_name: str | None) -> StepRow | None:
    """The row of a plain step span (see :mod:`~collector_service.ingest.plain_step`),
    built straight from one walk over its attributes; ``None`` for any other span, which
    :func:`map_step`'s general readers then map, with their notes."""
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not 0 < start <= end:
        return None  # a missing or reversed time is noted
    read = read_plain_step(span.attributes)
    if read is None:
        return None
    columns, metrics, remaining, encoded = read
    get = columns.get
    step_type = columns[c.STEP_TYPE]
    step_name = get(c.STEP_NAME)
    if not step_name:
        if "\x00" in span.name:
            return None  # replaced, and noted
        step_name = span.name[:MAX_LABEL_CHARS] or step_type
    trace_id = span.trace_id.hex()
    exception = _last_exception(span) if span.events else None
    status, error = _status(span, exception)
    return StepRow(
        run_id=get(c.RUN_ID) or trace_id,
        seq=get(c.STEP_SEQ),
        step_name=step_name,
        step_type=step_type,
        pipeline=get(c.RUN_PIPELINE),
        entity=get(c.RUN_ENTITY),
        candidates_in=get(c.STEP_CANDIDATES_IN),
        candidates_out=get(c.STEP_CANDIDATES_OUT),
        why=get(c.STEP_WHY),
        why_json=get(c.STEP_WHY_JSON),
        input=get(c.STEP_INPUT),
        output=get(c.STEP_OUTPUT),
        metrics=metrics,
        status=status,
        error=error,
        started_at=_from_unix_nano(start),
        ended_at=_from_unix_nano(end),
        trace_id=trace_id,
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() if len(span.parent_span_id) == 8 else None,
        service_name=service_name,
        attributes=_with_exception_details(remaining, exception),
        encoded=encoded,
    )


def map_run_span(span: Span, service_name: str | None, received_at: datetime,
                 service_version: str | None = None) -> RunRow:
    """The complete ``xray_runs`` row described by a run span (``service_version``: the
    resource's, the run's version unless the span names one)."""
    attrs = _read_attributes(span.attributes)
    trace_id = span.trace_id.hex()
    started_at, ended_at = _times(span, received_at, attrs)
    exception = _last_exception(span)
    status, error = _status(span, exception)
    return RunRow(
        run_id=_run_id(attrs, trace_id),
        pipeline=attrs.label(c.RUN_PIPELINE),
        entity=attrs.label(c.RUN_ENTITY),
        version=attrs.label(c.RUN_VERSION) or service_version,
        status=status,
        error=error,
        started_at=started_at,
        ended_at=ended_at,
        trace_id=trace_id,
        span_id=span.span_id.hex(),
        service_name=service_name,
        attributes=_with_exception_details(attrs.remaining(), exception),
        adjustments=tuple(attrs.adjustments),
        encoded=attrs.encoded,
    )


def merge_runs(run_spans: Iterable[RunRow], steps: Iterable[StepRow]) -> list[RunRow]:
    """One row per run id, sorted by run id: the run span's row (the first, if several),
    else a provisional row implied by the run's steps, until its run span arrives."""
    merged: dict[str, RunRow] = {}
    for run in run_spans:
        merged.setdefault(run.run_id, run)
    implied: dict[str, list[StepRow]] = {}
    for step in steps:
        if step.run_id not in merged:
            implied.setdefault(step.run_id, []).append(step)
    for run_id, group in implied.items():
        merged[run_id] = _implied_run(group)
    return [merged[run_id] for run_id in sorted(merged)]


def _implied_run(steps: Sequence[StepRow]) -> RunRow:
    """A ``pending`` run spanning ``steps``, with the first names any of them carries."""
    first = steps[0]
    return RunRow(
        run_id=first.run_id,
        pipeline=next((s.pipeline for s in steps if s.pipeline), None),
        entity=next((s.entity for s in steps if s.entity), None),
        status="pending", error=None,
        started_at=min(s.started_at for s in steps),
        ended_at=max((s.ended_at for s in steps if s.ended_at is not None), default=None),
        trace_id=first.trace_id, span_id=None,
        service_name=next((s.service_name for s in steps if s.service_name), None),
    )


def _read_attributes(key_values: Iterable[KeyValue]) -> SpanAttributes:
    """The span's attributes as plain values. Scalars, nearly every value, are read
    in place; arrays and maps take the recursive reader, which bounds their depth."""
    values: dict[str, Any] = {}
    prefixed: list[str] = []
    problems: list[Adjustment] = []
    for kv in key_values:
        key, value = kv.key, kv.value
        if key.startswith(PREFIXES) and key not in values:
            prefixed.append(key)
        kind = value.WhichOneof("value")
        if kind == "string_value":
            values[key] = value.string_value
        elif kind is None:
            values[key] = None
        elif kind not in _NESTED:
            values[key] = getattr(value, kind)
        else:
            try:
                values[key] = from_any_value(value)
            except TooDeep as exc:
                values[key] = None
                problems.append(Adjustment(key, f"value {exc}; dropped"))
    attrs = SpanAttributes(values, prefixed)
    attrs.adjustments.extend(problems)
    return attrs


def _span_name(span: Span, attrs: SpanAttributes) -> str:
    name, changed = clean_text(span.name[:MAX_LABEL_CHARS])
    if changed:
        attrs.adjustments.append(Adjustment("span.name", "NUL characters replaced with U+FFFD"))
    return name


def _run_id(attrs: SpanAttributes, trace_id: str) -> str:
    run_id = attrs.text(c.RUN_ID)
    if run_id is not None and 0 < len(run_id) <= MAX_RUN_ID_LENGTH:
        return run_id
    if run_id is not None:
        attrs.reject(c.RUN_ID, f"must be 1 to {MAX_RUN_ID_LENGTH} characters; trace id used")
    return trace_id


def read_step_type(attrs: SpanAttributes) -> str:
    """``xray.step.type`` as one of the step types; anything else is ``other``, noted."""
    raw = attrs.text(c.STEP_TYPE)
    value = (raw or "").strip().lower()
    if value in c.STEP_TYPES:
        return value
    attrs.reject(c.STEP_TYPE, f"unknown step type {raw!r}; stored as 'other'")
    return c.StepType.OTHER.value


def _times(span: Span, received_at: datetime, attrs: SpanAttributes) -> tuple[datetime, datetime]:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0 and end == 0:
        attrs.adjustments.append(Adjustment("span.time", "no start or end time; receive time used"))
        return received_at, received_at
    if start == 0 or end == 0:
        attrs.adjustments.append(Adjustment("span.time", "start or end time missing; copied"))
        start = end = start or end
    if end < start:
        attrs.adjustments.append(
            Adjustment("span.time", "ended before it started; end set to start"))
        end = start
    return _from_unix_nano(start), _from_unix_nano(end)


def _from_unix_nano(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1000 / 1_000_000, UTC)  # by keyword: 50% slower


def _status(span: Span, exception: dict[str, Any] | None) -> tuple[str, str | None]:
    """``ok`` or ``error``, and the error text: the last exception event's, else the status's."""
    if span.status.code != Status.STATUS_CODE_ERROR:
        return "ok", None
    if exception is not None:
        kind = exception.get(c.EXCEPTION_TYPE) or "Exception"
        message = exception.get(c.EXCEPTION_MESSAGE) or span.status.message
        return "error", f"{kind}: {message}" if message else str(kind)
    return "error", span.status.message.replace("\x00", "\ufffd") or None


def _last_exception(span: Span) -> dict[str, Any] | None:
    for event in reversed(span.events):
        if event.name == c.EXCEPTION_EVENT:
            return {kv.key: _event_text(kv) for kv in event.attributes
                    if kv.key.startswith("exception.")}
    return None


def _event_text(kv: KeyValue) -> str:
    """An exception event's attribute as text; a value nested too deeply says so instead."""
    try:
        text = str(from_any_value(kv.value))
    except TooDeep as exc:
        text = f"<value {exc}>"
    return clean_text(text)[0]


def _with_exception_details(attributes: dict[str, Any],
                            exception: dict[str, Any] | None) -> dict[str, Any]:
    if exception and c.EXCEPTION_STACKTRACE in exception:
        attributes = {**attributes, c.EXCEPTION_STACKTRACE: exception[c.EXCEPTION_STACKTRACE]}
    return attributes


def artifact_value(name: str, value: Any) -> ArtifactValue:
    """The payload of artifact attribute ``name``: bytes, text, or an uploaded reference."""
    uploaded = c.parse_artifact_reference(value)
    if uploaded is not None:
        return ArtifactValue(name, b"", "application/octet-stream", uploaded_id=uploaded)
    if isinstance(value, bytes):
        return ArtifactValue(name, value, "application/octet-stream")
    text = value if isinstance(value, str) else repr(value)
    guessed = "application/json" if text[:1] in ("{", "[") else "text/plain; charset=utf-8"
    return ArtifactValue(name, text.encode("utf-8", errors="replace"), guessed)


def _resource_text(key_values: Iterable[KeyValue], key: str) -> str | None:
    for kv in key_values:
        if kv.key == key and kv.value.WhichOneof("value") == "string_value":
            return kv.value.string_value.replace("\x00", "\ufffd") or None
    return None

