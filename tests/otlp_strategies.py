"""Hypothesis strategies for OTLP export requests, good and bad, and their OTLP/JSON form.

The requests mix steps, run spans and foreign spans under several resources and scopes;
contract attributes carry values of the right type and of every wrong one (huge, NaN,
negative, NUL, invalid UTF-8, absurdly nested), ids have wrong lengths, times go missing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.otlp_builders import request, span
from xray_otel import conventions as c


def ci_settings(max_examples: int) -> settings:
    """Reproducible in CI: derandomized, no example database, no wall-clock deadline."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


INT64 = st.integers(-(2**63), 2**63 - 1)
ODD_TEXT = st.sampled_from(["", " ", "\x00", "a\x00b", "NaN", "-Infinity", "{", "[1,", "null",
                            "\\u0000", "\ufffd", "é" * 300, "x" * 600, "\U0001f600"])
TEXT = st.text(max_size=20) | ODD_TEXT
INVALID_UTF8 = st.sampled_from([b"\xff\xfe", b"ok\xc3\x28", b"\xed\xa0\x80", b"\x80", b"a\x00"])
KEYS = st.text(max_size=10) | st.sampled_from(["", "k\x00", "traceId", "spanId"])


def _array(values: list[AnyValue]) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=values))


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(
        values=[KeyValue(key=k, value=v) for k, v in pairs]))


def nested(depth: int) -> AnyValue:
    value = AnyValue(string_value="leaf")
    for _ in range(depth):
        value = _array([value])
    return value


SCALARS = st.one_of(
    st.just(AnyValue()),
    TEXT.map(lambda v: AnyValue(string_value=v)),
    st.booleans().map(lambda v: AnyValue(bool_value=v)),
    INT64.map(lambda v: AnyValue(int_value=v)),
    st.floats().map(lambda v: AnyValue(double_value=v)),
    (st.binary(max_size=16) | INVALID_UTF8).map(lambda v: AnyValue(bytes_value=v)),
)
ANY_VALUES = st.one_of(
    st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(_array),
        st.lists(st.tuples(KEYS, inner), max_size=3).map(_kvlist),
    ), max_leaves=8),
    st.integers(30, 36).map(nested),  # around the collector's nesting limit
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
JSON_TEXT = st.one_of(
    JSON_VALUES.map(json.dumps),  # NaN and Infinity included, as Python writes them
    st.tuples(JSON_VALUES, st.booleans()).map(lambda v: json.dumps(v[0], ensure_ascii=v[1])),
    st.sampled_from([
        '{"a": "\\ud800"}', '["\\udfff", 1]', '"\\ud83d\\ude00"', '{"\\u0000": 1}',
        '{"a": ' * 40 + "1" + "}" * 40, "[" * 3000 + "]" * 3000, "[" * 3000, "{} {}",
    ]),
    TEXT,
)


def _texts(*extra: str) -> st.SearchStrategy[AnyValue]:
    words = TEXT | st.sampled_from(extra) if extra else TEXT
    right = words.map(lambda v: AnyValue(string_value=v))
    return right | INVALID_UTF8.map(lambda v: AnyValue(bytes_value=v)) | ANY_VALUES


def _numbers() -> st.SearchStrategy[AnyValue]:
    ints = st.one_of(st.integers(0, 10_000), INT64).map(lambda v: AnyValue(int_value=v))
    doubles = st.one_of(st.sampled_from([5.0, -1.0, 1e300, 2.0**63]), st.floats())
    digits = st.sampled_from(["42", " 7 ", "-3", "9" * 19, "1e3"])
    return ints | doubles.map(lambda v: AnyValue(double_value=v)) | digits.map(
        lambda v: AnyValue(string_value=v)) | ANY_VALUES


def _json_texts() -> st.SearchStrategy[AnyValue]:
    return JSON_TEXT.map(lambda v: AnyValue(string_value=v)) | ANY_VALUES


CONTRACT: dict[str, st.SearchStrategy[AnyValue]] = {
    c.RUN_ID: _texts("run-1", "run-2", "r" * 300),
    c.RUN_PIPELINE: _texts("competitor_search", "p" * 600),
    c.RUN_ENTITY: _texts("B0PHONE"),
    c.STEP_TYPE: _texts(*c.STEP_TYPES, "FILTER", " rank ", "classifier"),
    c.STEP_NAME: _texts("n" * 600),
    c.STEP_SEQ: _numbers(),
    c.STEP_CANDIDATES_IN: _numbers(),
    c.STEP_CANDIDATES_OUT: _numbers(),
    c.STEP_WHY: _texts(),
    c.STEP_WHY_JSON: _json_texts(),
    c.STEP_INPUT: _json_texts(),
    c.STEP_OUTPUT: _json_texts(),
    c.SDK_TRUNCATED: ANY_VALUES,
}
PREFIXED: dict[str, st.SearchStrategy[AnyValue]] = {
    c.STEP_METRIC_PREFIX: _numbers(),
    c.ARTIFACT_PREFIX: _texts(c.artifact_reference("ab" * 32), c.artifact_reference("zz")),
}

ATTRIBUTE = st.one_of(
    st.sampled_from(sorted(CONTRACT)).flatmap(lambda k: st.tuples(st.just(k), CONTRACT[k])),
    st.sampled_from(sorted(PREFIXED)).flatmap(
        lambda p: st.tuples(st.text(max_size=6).map(lambda n: p + n), PREFIXED[p])),
    st.tuples(KEYS, ANY_VALUES),
)


def _ids(size: int, pool: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(pool), st.binary(min_size=size, max_size=size),
                     st.just(bytes(size)), st.binary(max_size=size + 4))


TRACE_IDS = _ids(16, [bytes(range(1, 17)), b"\xab" * 16])
SPAN_IDS = _ids(8, [bytes(range(1, 9)), b"\xcd" * 8])
NOW_NS = 1_767_225_600 * 10**9  # 2026-01-01
TIMES = st.one_of(st.just(0), st.integers(NOW_NS, NOW_NS + 10**12), st.integers(0, 2**64 - 1))


@st.composite
def exception_events(draw: st.DrawFn) -> Span.Event:
    names = [c.EXCEPTION_TYPE, c.EXCEPTION_MESSAGE, c.EXCEPTION_STACKTRACE, "exception.escaped"]
    pairs = draw(st.lists(st.tuples(st.sampled_from(names), _texts()), max_size=4))
    return Span.Event(name=draw(st.sampled_from([c.EXCEPTION_EVENT, "retry"]) | TEXT),
                      time_unix_nano=draw(TIMES),
                      attributes=[KeyValue(key=k, value=v) for k, v in pairs])


@st.composite
def spans(draw: st.DrawFn) -> Span:
    """A step, a run span or a foreign span, with any attributes at all."""
    pairs = draw(st.lists(ATTRIBUTE, max_size=6))
    kind = draw(st.sampled_from(["step", "run", "foreign"]))
    if kind == "step":
        pairs.insert(draw(st.integers(0, len(pairs))), (c.STEP_TYPE, draw(CONTRACT[c.STEP_TYPE])))
    elif kind == "run":
        pairs.append((c.RUN_PIPELINE, draw(CONTRACT[c.RUN_PIPELINE])))
    links = draw(st.lists(st.tuples(TRACE_IDS, SPAN_IDS), max_size=2))
    return Span(
        trace_id=draw(TRACE_IDS), span_id=draw(SPAN_IDS),
        parent_span_id=draw(st.just(b"") | SPAN_IDS), name=draw(TEXT),
        kind=draw(st.integers(0, 5)),  # type: ignore[arg-type]
        start_time_unix_nano=draw(TIMES), end_time_unix_nano=draw(TIMES),
        attributes=[KeyValue(key=k, value=v) for k, v in pairs],
        events=draw(st.lists(exception_events(), max_size=2)),
        links=[Span.Link(trace_id=t, span_id=s) for t, s in links],
        status=Status(code=draw(st.integers(0, 3)),  # type: ignore[arg-type]
                      message=draw(TEXT)),
    )


@st.composite
def requests(draw: st.DrawFn, max_spans: int = 4) -> ExportTraceServiceRequest:
    """A request of up to 2 resources, each of up to 2 scopes of ``max_spans`` spans."""
    resources = []
    for _ in range(draw(st.integers(0, 2))):
        service = draw(st.lists(st.tuples(st.just(c.SERVICE_NAME), _texts("svc")), max_size=1))
        extra = draw(st.lists(st.tuples(KEYS, ANY_VALUES), max_size=2))
        scopes = [ScopeSpans(scope=InstrumentationScope(name=draw(TEXT)),
                             spans=draw(st.lists(spans(), max_size=max_spans)))
                  for _ in range(draw(st.integers(0, 2)))]
        resources.append(ResourceSpans(
            resource=Resource(attributes=[KeyValue(key=k, value=v)
                                          for k, v in service + extra]),
            scope_spans=scopes))
    return ExportTraceServiceRequest(resource_spans=resources)


_HEX_IDS = ("traceId", "spanId", "parentSpanId")


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """``request`` in OTLP/JSON: the protobuf JSON mapping, with hex trace and span ids."""
    document = json_format.MessageToDict(request)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _HEX_IDS and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(document)
    return json.dumps(document).encode()


def all_spans(request: ExportTraceServiceRequest) -> list[tuple[Span, Resource]]:
    """Every span of ``request`` with its resource, in order."""
    return [(span, rs.resource) for rs in request.resource_spans
            for ss in rs.scope_spans for span in ss.spans]


_DEEP = nested(40)
FOUND_BY_FUZZING = [  # each once sank its whole batch: an exception, or a row Postgres refused
    request(span("s", {c.STEP_TYPE: "llm", c.STEP_WHY_JSON: '{"a": "\\ud800"}',
                       c.STEP_INPUT: '["\\udfff"]'})),  # lone surrogates in JSON text
    request(span("\x00", {c.STEP_TYPE: "llm"})),  # NUL in the span name
    request(span("s", {c.STEP_TYPE: "llm", c.STEP_CANDIDATES_IN: 1e300, "k\x00": _DEEP})),
    request(span("s", {c.STEP_TYPE: "llm"}, events=[Span.Event(
        name=c.EXCEPTION_EVENT, attributes=[KeyValue(key=c.EXCEPTION_MESSAGE, value=_DEEP)])])),
]
