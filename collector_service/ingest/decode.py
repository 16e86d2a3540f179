"""Decode OTLP trace export requests, and X-Ray event batches, from protobuf or JSON bytes.

OTLP/JSON (hex trace and span ids, unknown fields ignored) is decoded by
:mod:`collector_service.ingest.otlp_json`, which fills the protobuf messages directly;
event batches, rarer and small, use protobuf's own JSON parser.
"""

from __future__ import annotations

import gzip
import json
import zlib

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_service.errors import DecodeError
from collector_service.ingest.otlp_json import decode_otlp_json
from collector_service.ingest.proto.xray.v1.events_pb2 import EventBatch, EventBatchResponse


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
    return decode_otlp_json(payload)


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


def encode_response(response: ExportTraceServiceResponse, as_json: bool) -> bytes:
    """Serialise a response in the request's own format."""
    if as_json:
        return str(json_format.MessageToJson(response, indent=None)).encode()
    return bytes(response.SerializeToString())


def gzip_bytes(data: bytes) -> bytes:
    """Compress with gzip (used by tests and benchmarks that speak OTLP/HTTP)."""
    return bytes(gzip.compress(data))
