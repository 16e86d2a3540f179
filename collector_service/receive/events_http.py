"""``POST /events``: X-Ray's own event batches (``proto/xray/v1/events.proto``) over HTTP.

For producers without OpenTelemetry. Shaped like ``POST /v1/traces``: the body is
``xray.v1.EventBatch`` as binary protobuf (``application/x-protobuf``) or protobuf's JSON
mapping (``application/json``), optionally gzip; it is admitted by its
``Content-Length`` before it is read, then stored through the shared ingest path. The
answers are OTLP's: 400 undecodable, 413 too large, 415 unknown content type, 429/503
with ``Retry-After`` when the producer should retry, and on success an
``EventBatchResponse`` that, like OTLP's ``partial_success``, counts the events that could
not be stored and says what was changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from collector_service.ingest.admission import Admission
from collector_service.ingest.decode import encode_events_response
from collector_service.ingest.pipeline import Format, IngestOutcome
from collector_service.ingest.proto.xray.v1.events_pb2 import EventBatchResponse
from collector_service.receive.auth import TokenAuthenticator
from collector_service.receive.http_post import PostEndpoint
from collector_service.telemetry.metrics import CollectorMetrics

PATH = "/events"
TRANSPORT = "events"
"""The ``transport`` label of ``xray_requests_total`` for this endpoint."""

EventsIngestFn = Callable[[bytes, Format, str | None], Awaitable[IngestOutcome]]


def routes(ingest_events: EventsIngestFn, admission: Admission, metrics: CollectorMetrics,
           max_request_bytes: int, auth: TokenAuthenticator | None = None,
           ) -> list[web.RouteDef]:
    """The ``POST /events`` route (bearer token checked first, with ``auth``)."""

    endpoint = PostEndpoint(
        TRANSPORT, ingest_events,
        lambda outcome, as_json: encode_events_response(response_for(outcome), as_json),
        admission, metrics, max_request_bytes, auth)
    return [web.post(PATH, endpoint.handle)]


def response_for(outcome: IngestOutcome) -> EventBatchResponse:
    """Empty when every event was stored as sent; else what was refused or changed."""
    if not outcome.rejected and not outcome.message:
        return EventBatchResponse()
    return EventBatchResponse(rejected_events=len(outcome.rejected),
                              error_message=outcome.message)

