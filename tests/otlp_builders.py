"""Build OTLP protobuf spans and requests from plain Python values, for tests."""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status


def any_value(value: Any) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    raise TypeError(type(value))


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    """OTLP attributes; ``None`` values are left out, as the OpenTelemetry SDK does."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items() if v is not None]


def new_trace_id() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return os.urandom(8)


def span(name: str, attributes: dict[str, Any], *, trace_id: bytes | None = None,
         span_id: bytes | None = None, parent: bytes = b"", start_ns: int | None = None,
         duration_ns: int = 5_000_000, error: str | None = None,
         events: list[Span.Event] | None = None) -> Span:
    start = time.time_ns() if start_ns is None else start_ns
    return Span(
        trace_id=trace_id or new_trace_id(), span_id=span_id or new_span_id(),
        parent_span_id=parent, name=name, kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start, end_time_unix_nano=start + duration_ns,
        attributes=key_values(attributes),
        status=Status(code=Status.STATUS_CODE_ERROR, message=error) if error else Status(),
        events=events or [],
    )


def request(*spans: Span, service: str = "test-service") -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=key_values({"service.name": service})),
        scope_spans=[ScopeSpans(spans=list(spans))],
    )])
