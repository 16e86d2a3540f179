"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

It knows nothing about storage. The handler receives the raw bytes (no deserializer), is
admitted by size before anything is decoded, hands the bytes to the ingest callable, and
translates errors into OTLP status codes. The standard ``grpc.health.v1.Health`` service
runs beside it and reflects the collector's readiness.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector_service.ingest.admission import Admission
from collector_service.ingest.pipeline import Format, IngestOutcome
from collector_service.receive.auth import TokenAuthenticator, grpc_authorization
from collector_service.receive.statuses import Answer, answer_for
from collector_service.telemetry.metrics import CollectorMetrics

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
IngestFn = Callable[[bytes, Format, str | None], Awaitable[IngestOutcome]]
CONCURRENT_RPCS_FACTOR = 4
"""gRPC's own hard limit is this many times ``max_inflight``: admission normally refuses
first (with RetryInfo); the hard limit only bounds what a flood of many connections can
make gRPC buffer. Its refusal, ``RESOURCE_EXHAUSTED`` without RetryInfo, is retried by
the Python exporter and the OpenTelemetry Collector but not by every SDK."""


def build_server(ingest: IngestFn, admission: Admission, metrics: CollectorMetrics,
                 max_message_bytes: int, auth: TokenAuthenticator | None = None,
                 reuse_port: bool = False) -> tuple[grpc.aio.Server, HealthServicer]:
    """A gRPC server with the Export and Health services, not yet bound or started.

    With ``auth``, Export checks the ``authorization`` metadata before anything else;
    Health stays open for probes. gRPC would share its port with any other process by
    default; only worker processes (``reuse_port``) do, so a port another program holds
    gives the "port in use" error.
    """

    async def export(payload: bytes,
                     context: grpc.aio.ServicerContext) -> ExportTraceServiceResponse:
        try:
            if auth is not None:
                auth.require(grpc_authorization(context), "grpc")
            async with admission.admit(len(payload)):
                outcome = await admission.run(ingest(payload, "protobuf", None))
        except Exception as exc:
            answer = answer_for(exc)
            metrics.requests.labels("grpc", answer.label).inc()
            await _abort(context, answer)
        metrics.requests.labels("grpc", "ok").inc()
        return outcome.response()

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Export": grpc.unary_unary_rpc_method_handler(
            export,  # request_deserializer omitted: the handler gets raw bytes
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        ),
    })
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", max_message_bytes),
                 ("grpc.so_reuseport", 1 if reuse_port else 0)],
        maximum_concurrent_rpcs=admission.max_requests * CONCURRENT_RPCS_FACTOR)
    server.add_generic_rpc_handlers((handler,))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server, health


async def set_health(health: HealthServicer, serving: bool) -> None:
    """Reflect readiness on the overall service ("") and the trace service."""
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", SERVICE):
        await health.set(name, status)


async def _abort(context: grpc.aio.ServicerContext, answer: Answer) -> None:
    """Abort with the answer's status; retryable answers carry RetryInfo."""
    if answer.retry_after_s is not None:
        delay = Duration()
        delay.FromNanoseconds(int(answer.retry_after_s * 1e9))
        retry_info = error_details_pb2.RetryInfo(retry_delay=delay)
        detail = any_pb2.Any()
        detail.Pack(retry_info)
        status = status_pb2.Status(code=answer.grpc_code.value[0], message=answer.message,
                                   details=[detail])
        context.set_trailing_metadata((
            ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString()),
        ))
    await context.abort(answer.grpc_code, answer.message)
