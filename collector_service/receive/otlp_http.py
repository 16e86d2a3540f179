"""OTLP/HTTP receiver (``POST /v1/traces``, protobuf or JSON, gzip) and operator endpoints.

Like the gRPC receiver it only admits, reads, calls the shared ingest callable and
translates errors, answering in the request's own content type as OTLP/HTTP requires:
400 for an undecodable body, 415 for an unknown content type, 413 for an oversized one,
429/503 with ``Retry-After`` when the client should retry. A request is admitted by its
``Content-Length`` before its body is read. ``/healthz`` (alive), ``/readyz`` (taking
work), ``/metrics`` (Prometheus) and ``/stats`` (JSON) are for operators and stay open
to probes and scrapers; with authentication on, ``POST /v1/traces`` checks the bearer
token before anything else and answers 401 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from collector_service.ingest.admission import Admission
from collector_service.ingest.decode import encode_response
from collector_service.receive.auth import WWW_AUTHENTICATE, TokenAuthenticator
from collector_service.receive.otlp_grpc import IngestFn
from collector_service.receive.statuses import Answer, answer_for
from collector_service.telemetry.metrics import PROMETHEUS_CONTENT_TYPE, CollectorMetrics

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ReadinessFn = Callable[[], tuple[bool, dict[str, Any]]]
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def build_app(ingest: IngestFn, admission: Admission, metrics: CollectorMetrics,
              readiness: ReadinessFn, max_request_bytes: int,
              extra_routes: list[web.RouteDef] | None = None,
              auth: TokenAuthenticator | None = None) -> web.Application:
    """The aiohttp application serving OTLP/HTTP traces and the operator endpoints."""

    async def traces(request: web.Request) -> web.Response:
        as_json = request.content_type == JSON
        try:
            if auth is not None:
                auth.require(request.headers.get("Authorization"), "http")
        except Exception as exc:
            return refusal(metrics, answer_for(exc), as_json)
        if request.content_type not in (PROTOBUF, JSON):
            return refusal(metrics, Answer(
                _INVALID, code_pb2.INVALID_ARGUMENT, 415,
                f"unsupported Content-Type {request.content_type!r}; use {PROTOBUF} or {JSON}"),
                as_json=False)
        declared = request.content_length
        if declared is not None and declared > max_request_bytes:
            return refusal(metrics, too_large(max_request_bytes), as_json)
        try:
            async with admission.admit(declared or 0):
                body = await request.read()
                outcome = await admission.run(ingest(
                    body, "json" if as_json else "protobuf",
                    request.headers.get("Content-Encoding")))
        except web.HTTPRequestEntityTooLarge:
            return refusal(metrics, too_large(max_request_bytes), as_json)
        except Exception as exc:
            return refusal(metrics, answer_for(exc), as_json)
        metrics.requests.labels("http", "ok").inc()
        return web.Response(body=encode_response(outcome.response(), as_json),
                            content_type=JSON if as_json else PROTOBUF)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, details = readiness()
        return web.json_response(details, status=200 if ready else 503)

    async def prometheus(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return response

    async def stats_json(_: web.Request) -> web.Response:
        return web.json_response(metrics.as_json())

    app = web.Application(client_max_size=max_request_bytes)
    app.add_routes([web.post("/v1/traces", traces), web.get("/healthz", healthz),
                    web.get("/readyz", readyz), web.get("/metrics", prometheus),
                    web.get("/stats", stats_json), *(extra_routes or [])])
    return app


def too_large(limit: int) -> Answer:
    return Answer(_INVALID, code_pb2.INVALID_ARGUMENT, 413, f"request body exceeds {limit} bytes")


def refusal(metrics: CollectorMetrics, answer: Answer, as_json: bool,
            transport: str = "http") -> web.Response:
    """A refusal as a ``google.rpc.Status`` in the request's format, counted."""
    metrics.requests.labels(transport, answer.label).inc()
    status = status_pb2.Status(code=answer.rpc_code, message=answer.message)
    headers = {"Retry-After": answer.retry_after_header} if answer.retry_after_header else None
    if answer.http_status == 401:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE}
    if as_json:
        return web.Response(status=answer.http_status, headers=headers, content_type=JSON,
                            text=json_format.MessageToJson(status, indent=None))
    return web.Response(status=answer.http_status, headers=headers, content_type=PROTOBUF,
                        body=status.SerializeToString())
