"""The mapping's shortcuts for common values give exactly what the general readers give:
the same rows, the same notes in the same order, whatever the request holds."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collector_service.ingest import attributes, mapping
from collector_service.ingest.attributes import SpanAttributes
from collector_service.ingest.mapping import map_request, map_step
from collector_service.store.rows import JsonCache, MappedBatch, StepRow
from tests.otlp_builders import any_value
from tests.otlp_strategies import ci_settings, exception_events, requests
from xray_otel import conventions as c

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)

EDGES = [None, True, False, 0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 5.0, 1.5,
         float("nan"), float("inf"), "", "7", "a\x00b", "x" * 512, "x" * 513, "é" * 512,
         "\ud800", b"ab", [1], {"k": 1}]
SCALARS = st.one_of(
    st.sampled_from(EDGES), st.integers(-(2**64), 2**64), st.floats(), st.text(max_size=20),
    st.binary(max_size=8), st.lists(st.integers(), max_size=2),
)
SIMPLE_KEYS = (c.STEP_SEQ, c.RUN_PIPELINE, c.RUN_ENTITY, c.STEP_CANDIDATES_IN,
               c.STEP_CANDIDATES_OUT, c.STEP_WHY)


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the shortcuts off: every value takes the general readers."""
    monkeypatch.setattr(SpanAttributes, "_simple_columns", lambda self: None)
    monkeypatch.setattr(mapping, "_plain_step", lambda span, service_name: None)
    monkeypatch.setattr(attributes, "plain_scalar", lambda value: False)


def _read(values: dict[str, Any]) -> tuple[Any, ...]:
    attrs = SpanAttributes(dict(values))
    columns = attrs.step_columns()
    return columns, attrs.remaining(), attrs.adjustments


@given(st.dictionaries(st.sampled_from([*SIMPLE_KEYS, "extra.a", "extra.b"]), SCALARS))
@ci_settings(max_examples=300)
def test_step_columns_are_the_general_readers(values: dict[str, Any]) -> None:
    fast = _read(values)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general(monkeypatch)
        general = _read(values)
    assert repr(fast) == repr(general)  # repr: NaN compares unequal to itself


@pytest.mark.parametrize("key", [*SIMPLE_KEYS, "extra"])
def test_each_column_at_its_edges_is_the_general_readers(key: str) -> None:
    for value in EDGES:
        values = {c.STEP_WHY: "why", "extra": "x", key: value}
        fast = _read(values)
        with pytest.MonkeyPatch.context() as monkeypatch:
            _general(monkeypatch)
            general = _read(values)
        assert repr(fast) == repr(general), value


def _mapped(request: ExportTraceServiceRequest) -> MappedBatch:
    return map_request(request, RECEIVED)


@given(requests())
@ci_settings(max_examples=150)
def test_whole_requests_map_the_same_with_and_without_shortcuts(
        request: ExportTraceServiceRequest) -> None:
    fast = _mapped(request)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general(monkeypatch)
        general = _mapped(request)
    assert _batch_signature(fast) == _batch_signature(general)


def test_the_shortcuts_are_taken_for_a_plain_step() -> None:
    attrs = SpanAttributes({c.STEP_SEQ: 3, c.RUN_PIPELINE: "p", c.STEP_WHY: "w"})
    assert attrs._simple_columns() == {
        "seq": 3, "pipeline": "p", "entity": None, "candidates_in": None,
        "candidates_out": None, "why": "w"}
    assert SpanAttributes({c.STEP_SEQ: 5.0})._simple_columns() is None  # converted by a reader


# The fast route from a plain step span straight to its row (mapping._plain_step)

JSON_COLUMNS = ("why_json", "input", "output", "metrics", "attributes")
NOW_NS = 1_767_225_600 * 10**9
PLAIN = {c.STEP_TYPE: "filter", c.RUN_ID: "run-1", c.STEP_NAME: "rank", c.STEP_SEQ: 2,
         c.RUN_PIPELINE: "search", c.RUN_ENTITY: "B0PHONE", c.STEP_CANDIDATES_IN: 10,
         c.STEP_CANDIDATES_OUT: 4, c.STEP_WHY: "kept the best", c.STEP_WHY_JSON: '{"k": [1, 2]}',
         c.STEP_INPUT: '{"q": "héadphones"}', c.STEP_OUTPUT: "[1.5, null, true]",
         c.metric_attribute("latency_ms"): 12.5, c.metric_attribute("tokens"): 300,
         "app.region": "eu"}
"""A step span every value of which the fast route takes."""
JSON_EDGES = ["{}", "[]", "null", "5", '"text"', "not json", "{", '{"a": NaN}', '{"a": Infinity}',
              '{"a": "\\u0000"}', '{"a": "\\ud800"}', '["\\uDFFF"]', "[" * 40 + "]" * 40,
              "[" * 20 + "]" * 20, '{"n": 99999999999999999999}', '{"n": 1e400}', " {} ",
              '{"a":1,"a":2}', '{"é": "\\u00e9"}', "\x00{}"]
SPAN_EDGES = [v for v in EDGES  # what OTLP can carry: int64, and text that UTF-8 can encode
              if not (type(v) is int and not -(2**63) <= v < 2**63) and v != "\ud800"]
KEYS = [*PLAIN, c.RUN_VERSION, c.metric_attribute(""), c.metric_attribute("x\x00"),
        c.artifact_attribute("a"), "extra", "extra\x00", "é"]


_ABSENT = object()
"""In place of a value: the attribute is not sent."""


def _span(values: dict[str, Any], *, name: str = "span", start: int = NOW_NS,
          end: int = NOW_NS + 5_000_000, extra: Sequence[tuple[str, Any]] = (),
          events: list[Span.Event] | None = None, status: Status | None = None) -> Span:
    pairs = [(k, v) for k, v in values.items() if v is not _ABSENT] + list(extra)
    return Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)),
                parent_span_id=bytes(range(9, 17)), name=name, start_time_unix_nano=start,
                end_time_unix_nano=end, events=events or [], status=status or Status(),
                attributes=[KeyValue(key=k, value=AnyValue() if v is None else any_value(v))
                            for k, v in pairs])


def _row_signature(row: StepRow) -> tuple[str, tuple[str | None, ...]]:
    """Everything a step row holds: its fields (``repr``, as NaN is not equal to itself)
    and the JSON text of each JSON column, as its ``COPY`` row takes it from the cache."""
    return repr(row), tuple(row.encoded.column(getattr(row, name)) for name in JSON_COLUMNS)


def _batch_signature(batch: MappedBatch) -> tuple[Any, ...]:
    return repr(batch), tuple(_row_signature(step) for step in batch.steps)


def _both_routes(span: Span) -> tuple[StepRow, StepRow, bool]:
    """The step row of ``span`` by the fast route (if it takes the span) and by the
    general readers, and whether the fast route took it."""
    taken = mapping._plain_step(span, "svc") is not None
    fast = map_step(span, "svc", RECEIVED)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general(monkeypatch)
        general = map_step(span, "svc", RECEIVED)
    return fast, general, taken


def test_a_plain_span_takes_the_fast_route_to_the_general_readers_row() -> None:
    fast, general, taken = _both_routes(_span(PLAIN))
    assert taken
    assert _row_signature(fast) == _row_signature(general)
    assert fast.adjustments == () and fast.attributes == {"app.region": "eu"}
    assert fast.metrics == {"latency_ms": 12.5, "tokens": 300}


@pytest.mark.parametrize("key", KEYS)
def test_the_fast_route_gives_the_general_readers_row_whatever_one_value_is(key: str) -> None:
    taken_for = []
    for value in [*SPAN_EDGES, *JSON_EDGES, _ABSENT, *c.STEP_TYPES, " rank ", "FILTER"]:
        span = _span({**PLAIN, key: value})
        fast, general, taken = _both_routes(span)
        assert _row_signature(fast) == _row_signature(general), (key, value)
        if taken:
            taken_for.append(value)
            assert fast.adjustments == (), (key, value)
    assert taken_for, key  # the comparison above covered the fast route too


@pytest.mark.parametrize(("name", "start", "end"), [
    ("span", 0, 0), ("span", 0, NOW_NS), ("span", NOW_NS, 0), ("span", NOW_NS, NOW_NS - 1),
    ("span", NOW_NS, NOW_NS), ("span", 1, 2**64 - 1), ("", NOW_NS, NOW_NS),
    ("a\x00b", NOW_NS, NOW_NS),
    ("n" * 513, NOW_NS, NOW_NS), ("é" * 600, NOW_NS, NOW_NS),
])
@pytest.mark.parametrize("step_name", [_ABSENT, "", "named"])
def test_span_names_and_times_at_their_edges(name: str, start: int, end: int,
                                             step_name: Any) -> None:
    span = _span({**PLAIN, c.STEP_NAME: step_name}, name=name, start=start, end=end)
    fast, general, _ = _both_routes(span)
    assert _row_signature(fast) == _row_signature(general)


@pytest.mark.parametrize("extra", [
    [(c.STEP_SEQ, 3)], [("extra", 1), ("extra", 2)], [(c.metric_attribute("tokens"), 1)],
    [("nested", [1, 2])], [("map", {"a": 1})], [("raw", b"ab")], [(c.artifact_attribute("a"), "x")],
])
def test_repeated_and_structured_attributes(extra: list[tuple[str, Any]]) -> None:
    fast, general, _ = _both_routes(_span(PLAIN, extra=extra))
    assert _row_signature(fast) == _row_signature(general)


def test_errors_and_exception_events_take_the_span_as_the_general_route_does() -> None:
    event = Span.Event(name=c.EXCEPTION_EVENT, attributes=[
        KeyValue(key=k, value=any_value(v)) for k, v in
        {c.EXCEPTION_TYPE: "ValueError", c.EXCEPTION_MESSAGE: "bad",
         c.EXCEPTION_STACKTRACE: "trace"}.items()])
    span = _span(PLAIN, events=[event],
                 status=Status(code=Status.STATUS_CODE_ERROR, message="failed"))
    fast, general, taken = _both_routes(span)
    assert taken and fast.error == "ValueError: bad"
    assert _row_signature(fast) == _row_signature(general)


VALUES = st.one_of(
    st.sampled_from([*SPAN_EDGES, *JSON_EDGES, _ABSENT, *c.STEP_TYPES]),
    st.integers(-(2**63), 2**63 - 1), st.floats(),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20), st.binary(max_size=8),
    st.lists(st.integers(-5, 5), max_size=2))


@st.composite
def near_plain_spans(draw: st.DrawFn) -> Span:
    """A plain step span with a few of its values, its name or its times drawn from the
    edges and from anything at all."""
    values = dict(PLAIN)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        values[key] = draw(VALUES)
    times = draw(st.sampled_from([(NOW_NS, NOW_NS + 5), (NOW_NS, NOW_NS), (0, NOW_NS),
                                  (NOW_NS + 5, NOW_NS)]))
    status = Status(code=draw(st.integers(0, 2)),  # type: ignore[arg-type]
                    message=draw(st.sampled_from(["", "failed", "a\x00"])))
    name = draw(st.sampled_from(["span", "", "a\x00"])
                | st.text(st.characters(exclude_categories=("Cs",)), max_size=5))
    return _span(values, name=name,
                 start=times[0], end=times[1], status=status,
                 events=draw(st.lists(exception_events(), max_size=1)))


@given(near_plain_spans())
@ci_settings(max_examples=300)
def test_near_plain_spans_map_the_same_by_either_route(span: Span) -> None:
    fast, general, _ = _both_routes(span)
    assert _row_signature(fast) == _row_signature(general)


def test_the_comparison_sees_every_column_and_every_json_text() -> None:
    """A fast route that got any one field or JSON text wrong would fail the tests above."""
    row = map_step(_span(PLAIN), "svc", RECEIVED)
    signature = _row_signature(row)
    for field in dataclasses.fields(StepRow):
        if field.name == "encoded":
            continue
        wrong = dataclasses.replace(row, **{field.name: "<wrong>"})
        assert _row_signature(wrong) != signature, field.name
    for name in JSON_COLUMNS:
        cache = JsonCache()
        value = getattr(row, name)
        cache.put(value, json.dumps(value) + " ")  # a text that is not the value's
        assert _row_signature(dataclasses.replace(row, encoded=cache)) != signature, name
