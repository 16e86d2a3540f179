"""One table from the collector's errors to OTLP answers, for both transports.

OTLP's rules: undecodable is ``INVALID_ARGUMENT`` / 400 and must not be retried; a
collector that cannot take the request now answers ``UNAVAILABLE`` / 429 or 503 with a
retry hint (``RetryInfo`` / ``Retry-After``), which standard exporters honour.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import grpc
from google.rpc import code_pb2

from collector_service.errors import (
    DecodeError,
    Overloaded,
    ShuttingDown,
    StorageError,
    StorageUnavailable,
    Unauthenticated,
)
from collector_service.telemetry.logs import RateLimitedLog

logger = logging.getLogger(__name__)
_refusals = RateLimitedLog(logger)

STORAGE_RETRY_S = 2.0


@dataclass(frozen=True)
class Answer:
    """How to answer a failed request on either transport."""

    grpc_code: grpc.StatusCode
    rpc_code: int
    http_status: int
    message: str
    retry_after_s: float | None = None

    @property
    def label(self) -> str:
        """The ``code`` label of ``xray_requests_total``."""
        return str(self.grpc_code.name).lower()

    @property
    def retry_after_header(self) -> str | None:
        return None if self.retry_after_s is None else str(math.ceil(self.retry_after_s))


def answer_for(exc: Exception) -> Answer:
    """The OTLP answer for ``exc``; anything unexpected is logged and INTERNAL."""
    unavailable = grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, DecodeError | Overloaded | ShuttingDown | StorageUnavailable):
        _refusals.warning(type(exc).__name__, "refused a request: %s", exc)
    if isinstance(exc, Unauthenticated):  # counted and logged by the authenticator
        return Answer(grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED, 401, str(exc))
    if isinstance(exc, DecodeError):
        return Answer(grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT, 400, str(exc))
    if isinstance(exc, Overloaded):
        return Answer(unavailable, code_pb2.RESOURCE_EXHAUSTED, 429, str(exc),
                      exc.retry_after_s)
    if isinstance(exc, ShuttingDown):
        return Answer(unavailable, code_pb2.UNAVAILABLE, 503, str(exc), exc.retry_after_s)
    if isinstance(exc, StorageUnavailable):
        return Answer(unavailable, code_pb2.UNAVAILABLE, 503, str(exc), STORAGE_RETRY_S)
    if isinstance(exc, StorageError):
        _refusals.error("storage_error", "storage refused a request: %s", exc)
        return Answer(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL, 500, str(exc))
    _refusals.error(type(exc).__name__, "export failed", exc_info=exc)
    return Answer(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL, 500,
                  "internal error; see collector log")
