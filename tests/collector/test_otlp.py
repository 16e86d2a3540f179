"""Decoding OTLP payloads: protobuf, OTLP/JSON (hex ids, int64 strings) and compression."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from collector_service.errors import DecodeError
from collector_service.ingest.decode import decode_json, decode_protobuf, decompress
from tests.otlp_builders import request, span
from xray_otel import conventions as c

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"


def otlp_json(trace_id: str = TRACE_HEX, span_id: str = SPAN_HEX) -> dict[str, object]:
    """Shaped like the OTLP specification's examples/trace.json."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "js-pipeline"}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "parentSpanId": "",
            "name": "filter", "kind": 1,
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "attributes": [
                {"key": c.STEP_TYPE, "value": {"stringValue": "filter"}},
                {"key": c.STEP_CANDIDATES_IN, "value": {"intValue": "5000"}},
                {"key": c.STEP_CANDIDATES_OUT, "value": {"intValue": 50}},
                {"key": c.metric_attribute("score"), "value": {"doubleValue": 0.5}},
            ],
            "status": {"code": 2, "message": "bad"},
            "futureField": {"ignored": True},
        }]}],
    }]}


def test_json_with_hex_ids_and_int64_strings() -> None:
    decoded = decode_json(json.dumps(otlp_json()).encode())
    parsed = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert parsed.trace_id.hex() == TRACE_HEX
    assert parsed.span_id.hex() == SPAN_HEX
    assert parsed.start_time_unix_nano == 1544712660000000000
    assert parsed.attributes[1].value.int_value == 5000
    assert parsed.status.code == 2


def test_json_ids_in_upper_case() -> None:
    decoded = decode_json(json.dumps(otlp_json(TRACE_HEX.upper(), SPAN_HEX.upper())).encode())
    assert decoded.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() == TRACE_HEX


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"[]", "JSON object"),
    (json.dumps(otlp_json(trace_id="zz")).encode(), "hex"),
    (json.dumps({"resourceSpans": "nope"}).encode(), "ExportTraceServiceRequest"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000, "JSON"),
])
def test_bad_json_is_a_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_json(body)


def test_protobuf_round_trip_and_garbage() -> None:
    original = request(span("s", {c.STEP_TYPE: "llm"}))
    assert decode_protobuf(original.SerializeToString()) == original
    with pytest.raises(DecodeError):
        decode_protobuf(b"\x0a\xff\xff\xff\xff\x0f garbage")


def test_decompress_gzip_deflate_and_limits() -> None:
    data = b"x" * 10_000
    assert decompress(gzip.compress(data), "gzip", 20_000) == data
    assert decompress(zlib.compress(data), "deflate", 20_000) == data
    assert decompress(data, None, 20_000) == data
    with pytest.raises(DecodeError, match="exceeds"):
        decompress(gzip.compress(data), "gzip", 1_000)
    with pytest.raises(DecodeError, match="not valid gzip"):
        decompress(b"plain", "gzip", 1_000)
    with pytest.raises(DecodeError, match="truncated"):
        decompress(gzip.compress(data)[:-20], "gzip", 20_000)
    with pytest.raises(DecodeError, match="Content-Encoding"):
        decompress(data, "br", 20_000)
