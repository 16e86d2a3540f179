"""The decoders on arbitrary bytes: a request or a DecodeError, never another exception.

Whatever a decoder returns, the mapping takes too. Inputs are random bytes, random JSON
documents built from OTLP field names, and valid requests with one part broken.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_service.errors import DecodeError
from collector_service.ingest.decode import decode_json, decode_protobuf, decompress
from collector_service.ingest.mapping import map_request
from tests.otlp_strategies import JSON_VALUES, ci_settings, otlp_json, requests

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
OTLP_KEYS = st.sampled_from([
    "resourceSpans", "resource", "scopeSpans", "scope", "spans", "traceId", "spanId",
    "parentSpanId", "name", "attributes", "key", "value", "stringValue", "intValue",
    "doubleValue", "bytesValue", "arrayValue", "kvlistValue", "values", "startTimeUnixNano",
    "endTimeUnixNano", "status", "code", "message", "events", "links", "kind",
])
OTLP_DOCUMENTS = st.recursive(
    JSON_VALUES | st.sampled_from(["0102", "zz", "AAAA", "-1", "18446744073709551616"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(OTLP_KEYS, inner, max_size=4),
    max_leaves=20,
)
Decoder = Callable[[bytes], ExportTraceServiceRequest]


def decodes_or_refuses(decoder: Decoder, payload: bytes) -> None:
    try:
        request = decoder(payload)
    except DecodeError as exc:
        assert str(exc)  # the client is told what is wrong
        return
    map_request(request, RECEIVED)


@ci_settings(300)
@given(st.binary(max_size=300))
def test_protobuf_decoder_on_arbitrary_bytes(payload: bytes) -> None:
    decodes_or_refuses(decode_protobuf, payload)


@ci_settings(100)
@given(requests(max_spans=2), st.data())
def test_protobuf_decoder_on_damaged_requests(request: ExportTraceServiceRequest,
                                              data: st.DataObject) -> None:
    payload = bytearray(request.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(payload):
            payload[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del payload[at:]
        else:
            payload[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    decodes_or_refuses(decode_protobuf, bytes(payload))


@ci_settings(200)
@given(st.binary(max_size=300) | OTLP_DOCUMENTS.map(lambda d: json.dumps(d).encode()))
def test_json_decoder_on_arbitrary_bytes_and_documents(payload: bytes) -> None:
    decodes_or_refuses(decode_json, payload)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


@ci_settings(100)
@given(requests(max_spans=2), st.data())
def test_json_decoder_on_requests_with_one_part_replaced(request: ExportTraceServiceRequest,
                                                         data: st.DataObject) -> None:
    document = json.loads(otlp_json(request))
    path = data.draw(st.sampled_from(_paths(document)))
    replacement = data.draw(OTLP_DOCUMENTS)
    if not path:
        document = replacement
    else:
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = replacement
    decodes_or_refuses(decode_json, json.dumps(document).encode())


def _compressed(data: bytes, encoding: str) -> bytes:
    return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)


@ci_settings(200)
@given(st.binary(max_size=200), st.sampled_from(["gzip", "deflate"]), st.integers(0, 300),
       st.sampled_from(["raw", "whole", "truncated"]), st.data())
def test_decompression_is_bounded_and_refuses_cleanly(
        body: bytes, encoding: str, limit: int, shape: str, data: st.DataObject) -> None:
    if shape != "raw":
        body = _compressed(body, encoding)
    if shape == "truncated":
        body = body[:data.draw(st.integers(0, len(body) - 1))]
    try:
        out = decompress(body, encoding, limit)
    except DecodeError as exc:
        assert str(exc)
        return
    assert len(out) <= limit


@ci_settings(50)
@given(st.text(max_size=12))
def test_unknown_content_encodings_are_refused(encoding: str) -> None:
    if encoding.strip().lower() in ("gzip", "deflate", "identity", ""):
        return
    with pytest.raises(DecodeError, match="Content-Encoding"):
        decompress(b"x", encoding, 100)
