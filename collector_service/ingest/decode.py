"""Decode OTLP trace export requests, and X-Ray event batches, from protobuf or JSON bytes.

OTLP/JSON differs from protobuf's canonical JSON in one way that matters here: trace
and span ids are hex strings, not base64. They are converted before parsing. Unknown
fields are ignored, as the OTLP specification requires of receivers.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_service.errors import DecodeError
from collector_service.ingest.proto.xray.v1.events_pb2 import EventBatch, EventBatchResponse

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_MAX_JSON_DEPTH = 300
"""Deep enough for every request protobuf accepts (100 nested messages, each at most three
JSON levels: an AnyValue array is ``{"arrayValue": {"values": [...]}}``), so both forms
of a request decode alike; ``ParseDict`` refuses deeper messages itself."""


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate or identity) without exceeding ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise DecodeError(f"unsupported Content-Encoding {encoding!r}; use gzip or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise DecodeError(f"body is not valid {encoding}: {exc}") from exc
    if len(out) > limit:
        raise DecodeError(f"decompressed body exceeds the {limit}-byte request limit")
    if not inflater.eof:
        raise DecodeError(f"{encoding} body is truncated")
    return out


def decode_protobuf(payload: bytes) -> ExportTraceServiceRequest:
    """Parse a binary-protobuf ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(payload)
    except (ProtobufDecodeError, RecursionError, ValueError) as exc:
        raise DecodeError(f"payload is not an OTLP ExportTraceServiceRequest: {exc}") from exc
    return request


def decode_json(payload: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest`` (hex ids, int64 as strings)."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeError("body must be a JSON object with a resourceSpans array")
    try:
        _hex_ids_to_base64(document, depth=0)
        request = ExportTraceServiceRequest()
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
        return request
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
        raise DecodeError(f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc


def decode_events(payload: bytes, as_json: bool) -> EventBatch:
    """Parse an ``xray.v1.EventBatch``: binary protobuf, or protobuf's JSON mapping
    (unknown fields ignored, so newer producers reach older collectors)."""
    batch = EventBatch()
    try:
        if as_json:
            document = json.loads(payload)
            if not isinstance(document, dict):
                raise DecodeError("body must be a JSON object with an events array")
            json_format.ParseDict(document, batch, ignore_unknown_fields=True)
        else:
            batch.ParseFromString(payload)
    except (json_format.ParseError, ProtobufDecodeError, RecursionError, UnicodeDecodeError,
            json.JSONDecodeError, TypeError, ValueError) as exc:
        form = "JSON" if as_json else "protobuf"
        raise DecodeError(f"body is not an xray.v1.EventBatch in {form}: {exc}") from exc
    return batch


def encode_events_response(response: EventBatchResponse, as_json: bool) -> bytes:
    """Serialise an events response in the request's own format."""
    if as_json:
        return str(json_format.MessageToJson(response, indent=None)).encode()
    return bytes(response.SerializeToString())


def _hex_ids_to_base64(node: Any, depth: int) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise DecodeError(f"JSON nested deeper than {_MAX_JSON_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = _hex_to_base64(key, value)
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _hex_ids_to_base64(item, depth + 1)


def _hex_to_base64(key: str, value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise DecodeError(f"{key} {value!r} is not a hex string") from exc
    return base64.b64encode(raw).decode("ascii")


def encode_response(response: ExportTraceServiceResponse, as_json: bool) -> bytes:
    """Serialise a response in the request's own format."""
    if as_json:
        return str(json_format.MessageToJson(response, indent=None)).encode()
    return bytes(response.SerializeToString())


def gzip_bytes(data: bytes) -> bytes:
    """Compress with gzip (used by tests and benchmarks that speak OTLP/HTTP)."""
    return bytes(gzip.compress(data))
