"""OTLP/HTTP receiver (``POST /v1/traces``, protobuf or JSON, gzip) and health endpoints.

Like the gRPC receiver it only decodes, calls the shared ingest callable and translates
errors, answering in the request's own content type as OTLP/HTTP requires:
400 for an undecodable body, 415 for an unknown content type, 413 for an oversized
one, 429/503 with ``Retry-After`` when the client should retry.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_service.errors import DecodeError, Overloaded, StorageUnavailable
from collector_service.ingest.decode import (
    decode_json,
    decode_protobuf,
    decompress,
    encode_response,
)
from collector_service.ingest.pipeline import IngestOutcome
from collector_service.telemetry.stats import IngestStats

logger = logging.getLogger(__name__)

IngestFn = Callable[[ExportTraceServiceRequest], Awaitable[IngestOutcome]]
ReadyFn = Callable[[], Awaitable[None]]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_UNAVAILABLE_RETRY_S = 2


def build_app(ingest: IngestFn, ready: ReadyFn, max_request_bytes: int,
              stats: IngestStats | None = None,
              extra_routes: list[web.RouteDef] | None = None) -> web.Application:
    """The aiohttp application serving OTLP/HTTP traces and health checks."""

    async def traces(request: web.Request) -> web.Response:
        as_json = request.content_type == JSON
        if request.content_type not in (PROTOBUF, JSON):
            return _status(415, code_pb2.INVALID_ARGUMENT,
                           f"unsupported Content-Type {request.content_type!r}; "
                           f"use {PROTOBUF} or {JSON}", as_json=False)
        try:
            body = await request.read()
            payload = decompress(body, request.headers.get("Content-Encoding"),
                                 max_request_bytes)
            otlp = decode_json(payload) if as_json else decode_protobuf(payload)
            outcome = await ingest(otlp)
        except web.HTTPRequestEntityTooLarge:
            return _status(413, code_pb2.INVALID_ARGUMENT,
                           f"request body exceeds {max_request_bytes} bytes", as_json)
        except DecodeError as exc:
            return _status(400, code_pb2.INVALID_ARGUMENT, str(exc), as_json)
        except Overloaded as exc:
            return _status(429, code_pb2.RESOURCE_EXHAUSTED, str(exc), as_json,
                           retry_after=math.ceil(exc.retry_after_s))
        except StorageUnavailable as exc:
            return _status(503, code_pb2.UNAVAILABLE, str(exc), as_json,
                           retry_after=_UNAVAILABLE_RETRY_S)
        except Exception:
            logger.exception("export failed")
            return _status(500, code_pb2.INTERNAL, "internal error; see collector log", as_json)
        return web.Response(body=encode_response(outcome.response(), as_json),
                            content_type=JSON if as_json else PROTOBUF)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        try:
            await ready()
        except StorageUnavailable as exc:
            return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
        return web.json_response({"status": "ready"})

    async def stats_json(_: web.Request) -> web.Response:
        return web.json_response(stats.as_json() if stats else {})

    app = web.Application(client_max_size=max_request_bytes)
    app.add_routes([web.post("/v1/traces", traces), web.get("/healthz", healthz),
                    web.get("/readyz", readyz), web.get("/stats", stats_json),
                    *(extra_routes or [])])
    return app


def _status(http_status: int, code: int, message: str, as_json: bool,
            retry_after: int | None = None) -> web.Response:
    status = status_pb2.Status(code=code, message=message)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if as_json:
        return web.Response(status=http_status, headers=headers, content_type=JSON,
                            text=json_format.MessageToJson(status, indent=None))
    return web.Response(status=http_status, headers=headers, content_type=PROTOBUF,
                        body=status.SerializeToString())
