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

from aiohttp import web

from collector_service.ingest.admission import Admission
from collector_service.ingest.decode import encode_response
from collector_service.receive.auth import TokenAuthenticator
from collector_service.receive.http_post import PostEndpoint
from collector_service.receive.otlp_grpc import IngestFn
from collector_service.telemetry.metrics import PROMETHEUS_CONTENT_TYPE, CollectorMetrics

logger = logging.getLogger(__name__)

ReadinessFn = Callable[[], tuple[bool, dict[str, Any]]]


def build_app(ingest: IngestFn, admission: Admission, metrics: CollectorMetrics,
              readiness: ReadinessFn, max_request_bytes: int,
              extra_routes: list[web.RouteDef] | None = None,
              auth: TokenAuthenticator | None = None) -> web.Application:
    """The aiohttp application serving OTLP/HTTP traces and the operator endpoints."""

    traces = PostEndpoint(
        "http", ingest, lambda outcome, as_json: encode_response(outcome.response(), as_json),
        admission, metrics, max_request_bytes, auth)

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
    app.add_routes([web.post("/v1/traces", traces.handle), web.get("/healthz", healthz),
                    web.get("/readyz", readyz), web.get("/metrics", prometheus),
                    web.get("/stats", stats_json), *(extra_routes or [])])
    return app
