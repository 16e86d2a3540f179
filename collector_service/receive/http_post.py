"""The one way an ingest ``POST`` is handled over HTTP, for ``/v1/traces`` and ``/events``.

Token first, then content type and declared size, then admission by ``Content-Length``
before the body is read, then the shared ingest path; every refusal is a
``google.rpc.Status`` in the request's own format (protobuf or JSON), counted under the
endpoint's transport label.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from collector_service.ingest.admission import Admission
from collector_service.ingest.pipeline import Format, IngestOutcome
from collector_service.receive.auth import WWW_AUTHENTICATE, TokenAuthenticator
from collector_service.receive.statuses import Answer, answer_for
from collector_service.telemetry.metrics import CollectorMetrics

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT

IngestBodyFn = Callable[[bytes, Format, str | None], Awaitable[IngestOutcome]]
EncodeFn = Callable[[IngestOutcome, bool], bytes]
"""The success answer for an outcome, as JSON (True) or protobuf (False)."""


@dataclass(frozen=True)
class PostEndpoint:
    """What differs between the ingest endpoints: their label, ingest call and answer."""

    transport: str
    ingest: IngestBodyFn
    encode: EncodeFn
    admission: Admission
    metrics: CollectorMetrics
    max_request_bytes: int
    auth: TokenAuthenticator | None = None

    async def handle(self, request: web.Request) -> web.Response:
        as_json = request.content_type == JSON
        try:
            if self.auth is not None:
                self.auth.require(request.headers.get("Authorization"), self.transport)
        except Exception as exc:
            return self.refuse(answer_for(exc), as_json)
        if request.content_type not in (PROTOBUF, JSON):
            return self.refuse(Answer(
                _INVALID, code_pb2.INVALID_ARGUMENT, 415,
                f"unsupported Content-Type {request.content_type!r}; use {PROTOBUF} or {JSON}"),
                as_json=False)
        declared = request.content_length
        if declared is not None and declared > self.max_request_bytes:
            return self.refuse(too_large(self.max_request_bytes), as_json)
        try:
            async with self.admission.admit(declared or 0):
                body = await request.read()
                outcome = await self.admission.run(self.ingest(
                    body, "json" if as_json else "protobuf",
                    request.headers.get("Content-Encoding")))
        except web.HTTPRequestEntityTooLarge:
            return self.refuse(too_large(self.max_request_bytes), as_json)
        except Exception as exc:
            return self.refuse(answer_for(exc), as_json)
        self.metrics.requests.labels(self.transport, "ok").inc()
        return web.Response(body=self.encode(outcome, as_json),
                            content_type=JSON if as_json else PROTOBUF)

    def refuse(self, answer: Answer, as_json: bool) -> web.Response:
        return refusal(self.metrics, answer, as_json, self.transport)


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
