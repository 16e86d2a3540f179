"""Map a batch of X-Ray events (``proto/xray/v1/events.proto``) to rows. Pure, like mapping.py.

Events become the same :class:`RunRow` / :class:`StepRow` objects OTLP spans do, so they
take the same offload and write path. Each step's values are read through the span
attribute readers (:class:`SpanAttributes`) under their contract names, so the same
checks, coercions and warnings apply. Within a batch, a step's start and end (and a
run's) are merged into one row; across batches the write path merges them: an end
completes a ``running`` row, a start after its end changes nothing.

Ids are derived from the producer's names, so a replay or a late end finds its row::

    trace_id = SHA-256("xray.run:" + run_id)[:16 bytes]
    step span_id = SHA-256("xray.step:" + run_id + "\\n" + step_id)[:8 bytes]
    run span_id = SHA-256("xray.run-span:" + run_id)[:8 bytes]
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2

from collector_service.ingest.attributes import MAX_RUN_ID_LENGTH, SpanAttributes
from collector_service.ingest.mapping import artifact_value, merge_runs, read_step_type
from collector_service.ingest.proto.xray.v1 import events_pb2 as pb
from collector_service.ingest.values import MAX_DEPTH, TooDeep
from collector_service.store.rows import (
    Adjustment,
    ArtifactValue,
    MappedBatch,
    RejectedSpan,
    RunRow,
    StepRow,
)
from xray_otel import conventions as c

_MAX_SAFE_INTEGER = 2**53


def trace_id_for(run_id: str) -> str:
    """The trace id (32 hex digits) of every row of run ``run_id``."""
    return hashlib.sha256(f"xray.run:{run_id}".encode()).hexdigest()[:32]


def step_span_id(run_id: str, step_id: str) -> str:
    """The span id (16 hex digits) of step ``step_id`` of run ``run_id``."""
    return hashlib.sha256(f"xray.step:{run_id}\n{step_id}".encode()).hexdigest()[:16]


def run_span_id(run_id: str) -> str:
    """The span id (16 hex digits) of the run itself: its row's, and its steps' parent."""
    return hashlib.sha256(f"xray.run-span:{run_id}".encode()).hexdigest()[:16]


@dataclass
class _Pair:
    """The start and end events of one run or step seen in a batch (first of each wins)."""

    start: Any = None
    end: Any = None


def map_events(batch: pb.EventBatch, received_at: datetime) -> MappedBatch:
    """Every run and step row ``batch`` describes, and the events that cannot be stored."""
    runs: dict[str, _Pair] = {}
    steps: dict[tuple[str, str], _Pair] = {}
    rejected: list[RejectedSpan] = []
    for index, event in enumerate(batch.events):
        kind = event.WhichOneof("kind")
        if kind is None:
            rejected.append(RejectedSpan("", "", f"event {index}: no run_start, run_end, "
                                                 "step_start or step_end set"))
            continue
        body = getattr(event, kind)
        problem = _identity_problem(body, with_step=kind.startswith("step"))
        if problem is not None:
            rejected.append(RejectedSpan("", "", f"event {index} ({kind}): {problem}"))
            continue
        if kind.startswith("step"):
            pair = steps.setdefault((body.run_id, body.step_id), _Pair())
        else:
            pair = runs.setdefault(body.run_id, _Pair())
        if kind.endswith("start") and pair.start is None:
            pair.start = body
        elif kind.endswith("end") and pair.end is None:
            pair.end = body
    service = batch.service_name.replace("\x00", "\ufffd") or None
    step_rows = [map_step_events(pair.start, pair.end, service, received_at)
                 for pair in steps.values()]
    run_rows = [map_run_events(pair.start, pair.end, service, received_at)
                for pair in runs.values()]
    return MappedBatch(runs=tuple(merge_runs(run_rows, step_rows)), steps=tuple(step_rows),
                       rejected=tuple(rejected), ignored_spans=0)


def _identity_problem(body: Any, with_step: bool) -> str | None:
    if not body.run_id:
        return "run_id is required"
    if len(body.run_id) > MAX_RUN_ID_LENGTH:
        return f"run_id must be 1 to {MAX_RUN_ID_LENGTH} characters"
    if with_step and not body.step_id:
        return "step_id is required"
    return None


def map_step_events(start: pb.StepStart | None, end: pb.StepEnd | None,
                    service_name: str | None, received_at: datetime) -> StepRow:
    """One ``xray_steps`` row from a step's start, its end, or both (at least one)."""
    first = start if start is not None else end
    assert first is not None
    run_id, step_id = first.run_id, first.step_id
    notes: list[Adjustment] = []
    attrs = SpanAttributes(_step_values(start, end, notes))
    attrs.adjustments.extend(notes)
    step_type = read_step_type(attrs) if attrs.has(c.STEP_TYPE) else c.StepType.OTHER.value
    started_at, ended_at = _step_times(start, end, received_at, attrs.adjustments)
    status, error = _outcome(end)
    parent = _text(start, end, "parent_step_id")
    return StepRow(
        run_id=run_id,
        step_name=attrs.label(c.STEP_NAME) or step_type,
        step_type=step_type,
        **attrs.step_columns(),
        status=status,
        error=error,
        started_at=started_at,
        ended_at=ended_at,
        trace_id=trace_id_for(run_id),
        span_id=step_span_id(run_id, step_id),
        parent_span_id=step_span_id(run_id, parent) if parent else run_span_id(run_id),
        service_name=service_name,
        attributes=attrs.remaining(),
        adjustments=tuple(attrs.adjustments),
        artifacts=_artifacts(end, attrs.adjustments),
        encoded=attrs.encoded,
    )


def _step_values(start: pb.StepStart | None, end: pb.StepEnd | None,
                 notes: list[Adjustment]) -> dict[str, Any]:
    """The step's values under their attribute-contract names: the start's own fields
    from the start when it has them, else from the end; the outcome from the end."""
    values = _attributes(start, end, notes)
    for name, field in ((c.STEP_TYPE, "type"), (c.STEP_NAME, "name"), (c.RUN_PIPELINE, "pipeline"),
                        (c.RUN_ENTITY, "entity")):
        if text := _text(start, end, field):
            values[name] = text
    seq = next((e.seq for e in (start, end) if e is not None and e.HasField("seq")), None)
    if seq is not None:
        values[c.STEP_SEQ] = seq
    for event in (start, end):
        found, value = _structured(event, "input", notes)
        if found:
            values[c.STEP_INPUT] = _json_text(value)
            break
    if end is None:
        return values
    if end.HasField("candidates_in"):
        values[c.STEP_CANDIDATES_IN] = end.candidates_in
    if end.HasField("candidates_out"):
        values[c.STEP_CANDIDATES_OUT] = end.candidates_out
    if end.why:
        values[c.STEP_WHY] = end.why
    for name, field in ((c.STEP_WHY_JSON, "why_json"), (c.STEP_OUTPUT, "output")):
        found, value = _structured(end, field, notes)
        if found:
            values[name] = _json_text(value)
    for name, number in end.metrics.items():
        values[c.STEP_METRIC_PREFIX + name] = _whole(number)
    return values


def _attributes(start: Any, end: Any, notes: list[Adjustment]) -> dict[str, Any]:
    """The producer's extra attributes: the start's, then the end's over them."""
    values: dict[str, Any] = {}
    for event in (start, end):
        found, value = _structured(event, "attributes", notes)
        if found:
            values.update(value)
    return values


def _json_text(value: Any) -> str:
    """JSON text for the attribute readers, which check and clean it like a span's."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def _artifacts(end: pb.StepEnd | None, notes: list[Adjustment]) -> tuple[ArtifactValue, ...]:
    if end is None:
        return ()
    found = []
    for name, artifact in end.artifacts.items():
        kind = artifact.WhichOneof("content")
        attribute = c.ARTIFACT_PREFIX + name
        if kind is None or not name:
            notes.append(Adjustment(attribute, "artifact without a name or content; dropped"))
            continue
        value = artifact_value(attribute, getattr(artifact, kind))
        if artifact.content_type and value.uploaded_id is None:
            value = ArtifactValue(attribute, value.data, artifact.content_type)
        found.append(value)
    return tuple(found)


def map_run_events(start: pb.RunStart | None, end: pb.RunEnd | None,
                   service_name: str | None, received_at: datetime) -> RunRow:
    """One ``xray_runs`` row: complete from an end (with or without its start), else a
    provisional ``running`` row that only fills gaps until the end arrives."""
    first = start if start is not None else end
    assert first is not None
    run_id = first.run_id
    notes: list[Adjustment] = []
    values = _attributes(start, end, notes)
    for name, field in ((c.RUN_PIPELINE, "pipeline"), (c.RUN_ENTITY, "entity")):
        if text := _text(end, start, field):
            values[name] = text
    attrs = SpanAttributes(values)
    attrs.adjustments.extend(notes)
    pipeline, entity = attrs.label(c.RUN_PIPELINE), attrs.label(c.RUN_ENTITY)
    started_at = _time(start, "time") or _time(end, "start_time")
    if end is None:
        status, error, ended_at, span_id = "running", None, None, None
        started_at = started_at or received_at
    else:
        status, error = _outcome(end)
        ended_at, span_id = _time(end, "time") or received_at, run_span_id(run_id)
        if started_at is not None and ended_at < started_at:
            attrs.adjustments.append(Adjustment("time", "ended before it started; end set "
                                                        "to start"))
            ended_at = started_at
    return RunRow(run_id=run_id, pipeline=pipeline, entity=entity, status=status, error=error,
                  started_at=started_at, ended_at=ended_at, trace_id=trace_id_for(run_id),
                  span_id=span_id, service_name=service_name, attributes=attrs.remaining(),
                  adjustments=tuple(attrs.adjustments), encoded=attrs.encoded)


def _step_times(start: pb.StepStart | None, end: pb.StepEnd | None, received_at: datetime,
                notes: list[Adjustment]) -> tuple[datetime, datetime | None]:
    ended_at = None
    if end is not None:
        ended_at = _time(end, "time")
        if ended_at is None:
            notes.append(Adjustment("time", "step_end has no time; receive time used"))
            ended_at = received_at
    started_at = _time(start, "time") or _time(end, "start_time")
    if started_at is None:
        fallback = "end time" if ended_at is not None else "receive time"
        notes.append(Adjustment("start_time", f"no start time; {fallback} used"))
        started_at = ended_at or received_at
    if ended_at is not None and ended_at < started_at:
        notes.append(Adjustment("time", "ended before it started; end set to start"))
        ended_at = started_at
    return started_at, ended_at


def _outcome(end: pb.StepEnd | pb.RunEnd | None) -> tuple[str, str | None]:
    if end is None:
        return "running", None
    error = end.error.replace("\x00", "\ufffd") or None
    if end.status == pb.STATUS_ERROR or error is not None:
        return "error", error
    return "ok", None


def _text(first: Any, second: Any, field: str) -> str:
    """``field`` of the first event that has it set (non-empty)."""
    for event in (first, second):
        if event is not None and (value := getattr(event, field)):
            return str(value)
    return ""


def _time(event: Any, field: str) -> datetime | None:
    if event is None or not event.HasField(field):
        return None
    stamp = getattr(event, field)
    micros = stamp.seconds * 1_000_000 + stamp.nanos // 1000
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def _from_value(value: struct_pb2.Value, depth: int = 0) -> Any:
    """A ``Value`` as plain Python. Protobuf's JSON numbers are all doubles: whole ones
    come back as integers (the way OpenTelemetry producers send them)."""
    if depth > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _from_struct(value.struct_value, depth + 1)
    if kind == "list_value":
        return [_from_value(item, depth + 1) for item in value.list_value.values]
    if kind == "number_value":
        return _whole(value.number_value)
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def _from_struct(struct: struct_pb2.Struct, depth: int = 0) -> dict[str, Any]:
    return {key: _from_value(item, depth + 1) for key, item in struct.fields.items()}


def _structured(event: Any, field: str, notes: list[Adjustment]) -> tuple[bool, Any]:
    """Whether ``field`` (a ``Value`` or ``Struct``) is set and usable, and its value."""
    if event is None or not event.HasField(field):
        return False, None
    message = getattr(event, field)
    try:
        if isinstance(message, struct_pb2.Struct):
            return True, _from_struct(message)
        return True, _from_value(message)
    except TooDeep as exc:
        notes.append(Adjustment(field, f"value {exc}; dropped"))
        return False, None


def _whole(number: float) -> float | int:
    if math.isfinite(number) and number.is_integer() and abs(number) < _MAX_SAFE_INTEGER:
        return int(number)
    return number
