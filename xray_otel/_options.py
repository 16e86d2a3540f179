"""``configure()``'s settings: one frozen dataclass built from arguments, then environment.

The only place X-Ray reads the environment, and it reads only what the SDK and the
exporters would not read for it: the protocol (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``,
then ``OTEL_EXPORTER_OTLP_PROTOCOL``) and the batch queue settings (``OTEL_BSP_*``,
because X-Ray must know the queue bound to count drops). Endpoints, headers, timeouts,
compression, certificates, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and
``OTEL_TRACES_SAMPLER`` are left to the exporters and the SDK, which read them
themselves whenever the matching argument is ``None``. Explicit arguments always win.
A bad value raises ``ValueError``/``TypeError`` naming the argument or variable, at
start-up. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

Protocol = Literal["grpc", "http/protobuf"]

PROTOCOLS: Final = ("grpc", "http/protobuf")
COMPRESSIONS: Final = ("gzip", "deflate", "none")
DEFAULT_EXIT_TIMEOUT_S: Final = 2.0
DEFAULT_MAX_QUEUE_SIZE: Final = 2048
DEFAULT_MAX_EXPORT_BATCH_SIZE: Final = 512
LENGTH_LIMIT_VARIABLES: Final = (
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
)


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Resolved export settings (``None``: let the exporter or SDK decide)."""

    protocol: Protocol
    endpoint: str | None
    headers: Mapping[str, str] | None
    insecure: bool | None
    compression: str | None
    export_timeout_s: float | None
    exit_timeout_s: float
    max_queue_size: int
    max_export_batch_size: int
    schedule_delay_millis: float | None
    attribute_length_limit_from_env: bool


def _protocol(explicit: str | None, environ: Mapping[str, str]) -> Protocol:
    source, value = "protocol", explicit
    if value is None:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            if environ.get(name):
                source, value = name, environ[name].strip().lower()
                break
    if value is None:
        return "grpc"
    if value == "http/json":
        raise ValueError(
            f"{source}={value!r}: the Python OTLP exporter has no http/json; use http/protobuf"
        )
    if value not in PROTOCOLS:
        raise ValueError(f"{source}={value!r}: expected one of {', '.join(PROTOCOLS)}")
    return value  # type: ignore[return-value]


def _positive(
    name: str, explicit: float | None, env_name: str, environ: Mapping[str, str]
) -> float | None:
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, (int, float)) or explicit <= 0:
            raise ValueError(f"{name} must be a positive number, got {explicit!r}")
        return explicit
    raw = environ.get(env_name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{env_name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{env_name}={raw!r} must be positive")
    return value


def _compression(explicit: str | None) -> str | None:
    if explicit is None:
        return None
    value = explicit.strip().lower()
    if value not in COMPRESSIONS:
        raise ValueError(f"compression={explicit!r}: expected one of {', '.join(COMPRESSIONS)}")
    return value


def build_export_options(
    *,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str] | None,
    insecure: bool | None,
    compression: str | None,
    export_timeout_s: float | None,
    exit_timeout_s: float,
    max_queue_size: int | None,
    max_export_batch_size: int | None,
    schedule_delay_millis: float | None,
    environ: Mapping[str, str],
) -> ExportOptions:
    """Validate and resolve the export settings; raise naming the bad argument or variable."""
    queue = _positive("max_queue_size", max_queue_size, "OTEL_BSP_MAX_QUEUE_SIZE", environ)
    batch = _positive(
        "max_export_batch_size", max_export_batch_size, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", environ
    )
    queue_size = int(queue) if queue is not None else DEFAULT_MAX_QUEUE_SIZE
    batch_size = min(int(batch) if batch is not None else DEFAULT_MAX_EXPORT_BATCH_SIZE, queue_size)
    if headers is not None and not isinstance(headers, Mapping):
        raise TypeError("headers must be a mapping of header name to value")
    exit_timeout = _positive("exit_timeout", exit_timeout_s, "", environ)
    return ExportOptions(
        protocol=_protocol(protocol, environ),
        endpoint=endpoint,
        headers=dict(headers) if headers is not None else None,
        insecure=insecure,
        compression=_compression(compression),
        export_timeout_s=_positive("export_timeout", export_timeout_s, "", environ),
        exit_timeout_s=exit_timeout if exit_timeout is not None else DEFAULT_EXIT_TIMEOUT_S,
        max_queue_size=queue_size,
        max_export_batch_size=batch_size,
        schedule_delay_millis=_positive(
            "schedule_delay_millis", schedule_delay_millis, "OTEL_BSP_SCHEDULE_DELAY", environ
        ),
        attribute_length_limit_from_env=any(environ.get(v) for v in LENGTH_LIMIT_VARIABLES),
    )
