"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

It knows nothing about storage: it decodes the request itself (so a malformed payload
is ``INVALID_ARGUMENT``, not an opaque deserialisation failure), hands it to the ingest
callable, and translates errors into OTLP status codes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_service.errors import DecodeError, Overloaded, StorageUnavailable
from collector_service.ingest.decode import decode_protobuf
from collector_service.ingest.pipeline import IngestOutcome

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
IngestFn = Callable[[ExportTraceServiceRequest], Awaitable[IngestOutcome]]
_UNAVAILABLE_RETRY_S = 2.0


def build_server(ingest: IngestFn, host: str, port: int,
                 max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
    """A gRPC server bound to ``host:port``, not yet started; returns it and the bound port."""

    async def export(payload: bytes,
                     context: grpc.aio.ServicerContext) -> ExportTraceServiceResponse:
        try:
            request = decode_protobuf(payload)
            outcome = await ingest(request)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Overloaded as exc:
            await _abort_retryable(context, grpc.StatusCode.UNAVAILABLE, str(exc),
                                   exc.retry_after_s)
        except StorageUnavailable as exc:
            await _abort_retryable(context, grpc.StatusCode.UNAVAILABLE, str(exc),
                                   _UNAVAILABLE_RETRY_S)
        except Exception:
            logger.exception("export failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see collector log")
        return outcome.response()

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Export": grpc.unary_unary_rpc_method_handler(
            export,  # request_deserializer omitted: the handler gets raw bytes
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        ),
    })
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ])
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}")
    return server, bound


async def _abort_retryable(context: grpc.aio.ServicerContext, code: grpc.StatusCode,
                           message: str, retry_after_s: float) -> None:
    """Abort with a retryable status carrying RetryInfo, read by standard OTLP exporters."""
    delay = Duration()
    delay.FromNanoseconds(int(retry_after_s * 1e9))
    retry_info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    context.set_trailing_metadata((
        ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
        ("grpc-status-details-bin", status.SerializeToString()),
    ))
    await context.abort(code, message)
