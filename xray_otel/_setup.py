"""``xray.configure()``: the one call that wires X-Ray into OpenTelemetry, plus flush/exit.

The only module (with ``_processor`` and ``_export``) that imports the OpenTelemetry SDK
and the OTLP exporters. ``configure`` finds or creates the ``TracerProvider`` (an
explicit one, else the global SDK provider if one is set — e.g. by
``opentelemetry-instrument`` — else a new one it sets as global), adds
``XRaySpanProcessor`` and a ``BoundedBatchSpanProcessor`` in front of the OTLP exporter
(gRPC by default), silences the log lines of the exporters it created (X-Ray warns
itself, rate limited, and counts in ``xray.stats()``) and rate-limits the others, and
registers one ``atexit`` hook that flushes for at most ``exit_timeout`` seconds, even
with a dead collector.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from xray_otel import _shed
from xray_otel._export import BoundedBatchSpanProcessor, OwnExporterFilter
from xray_otel._guard import DEFAULT_MAX_ARTIFACT_BYTES, DEFAULT_MAX_VALUE_BYTES, ArtifactUploader
from xray_otel._options import ExportOptions, build_export_options
from xray_otel._processor import XRaySpanProcessor
from xray_otel._ratelimit import RateLimitFilter, log
from xray_otel.conventions import SERVICE_NAME

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
)


@dataclass(slots=True)
class _Setup:
    provider: TracerProvider
    owns_provider: bool
    processor: XRaySpanProcessor
    batch: BoundedBatchSpanProcessor | None
    exit_timeout_s: float


_lock = threading.Lock()
_current: _Setup | None = None
_atexit_registered = False


def _otlp_exporter(options: ExportOptions) -> SpanExporter:
    if options.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}
        return OTLPSpanExporter(
            endpoint=options.endpoint,
            insecure=options.insecure,
            headers=dict(options.headers) if options.headers is not None else None,
            timeout=options.export_timeout_s,
            compression=None
            if options.compression is None
            else compression.get(options.compression, grpc.Compression.NoCompression),
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    endpoint = options.endpoint
    if endpoint is not None and urlparse(endpoint).path in ("", "/"):
        endpoint = (
            endpoint.rstrip("/") + "/v1/traces"
        )  # a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT
    return HTTPSpanExporter(
        endpoint=endpoint,
        headers=options.headers,
        timeout=options.export_timeout_s,
        compression=None if options.compression is None else Compression(options.compression),
    )


def _provider(
    explicit: TracerProvider | None,
    service_name: str | None,
    max_value_bytes: int,
    options: ExportOptions,
    set_global: bool,
) -> tuple[TracerProvider, bool]:
    """The provider to add to, and whether X-Ray created it."""
    if explicit is not None:
        return explicit, False
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if (
            service_name is not None
            and current.resource.attributes.get(SERVICE_NAME) != service_name
        ):
            log.warning(
                "service-name",
                "xray: global provider exists; service_name=%r ignored",
                service_name,
            )
        return current, False
    limit = None if options.attribute_length_limit_from_env else max_value_bytes
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name} if service_name else {}),
        span_limits=SpanLimits(max_span_attribute_length=limit, max_attribute_length=limit),
        shutdown_on_exit=False,  # X-Ray's own exit hook shuts it down, with a deadline
    )
    if set_global:
        trace.set_tracer_provider(provider)
    return provider, True


def configure(
    service_name: str | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    insecure: bool | None = None,
    compression: str | None = None,
    export_timeout: float | None = None,
    exit_timeout: float = 2.0,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    schedule_delay_millis: float | None = None,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    artifact_uploader: ArtifactUploader | None = None,
    span_exporter: SpanExporter | None = None,
    export: bool = True,
    tracer_provider: TracerProvider | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Set up X-Ray export and return the ``TracerProvider`` in use.

    Args:
        service_name: ``service.name`` of a provider created here (else
            ``OTEL_SERVICE_NAME``); ignored, with a warning, when adding to an existing one.
        endpoint: collector address; for HTTP a base URL gets ``/v1/traces`` appended.
            ``None``: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``/``OTEL_EXPORTER_OTLP_ENDPOINT``,
            else ``localhost:4317`` (gRPC) / ``localhost:4318`` (HTTP).
        protocol: ``"grpc"`` or ``"http/protobuf"``; ``None``: ``OTEL_EXPORTER_OTLP_*PROTOCOL``,
            else gRPC.
        headers, insecure, compression (``gzip``/``deflate``/``none``), export_timeout
            (seconds per export, retries included): passed to the exporter; ``None`` lets
            it read ``OTEL_EXPORTER_OTLP_*`` (timeout default 10 s).
        exit_timeout: longest wait for the collector at exit or :func:`shutdown` (s).
        max_queue_size, max_export_batch_size, schedule_delay_millis: the batch queue
            (``None``: ``OTEL_BSP_*``, else 2048 / 512 / 5000 ms). Overflow is dropped
            and counted in :func:`xray_otel.stats`. On a provider created here, X-Ray's
            runs and steps build no span at all while the queue is full and the
            collector failing (they would be dropped anyway); they count as dropped.
        max_value_bytes: per-value size limit.
        max_artifact_bytes: size limit of ``xray.artifact.*`` values (the larger of the
            two is ``SpanLimits.max_attribute_length`` of a provider created here, unless
            ``OTEL_*ATTRIBUTE_VALUE_LENGTH_LIMIT`` is set). Exports are split so that no
            request exceeds 4 MiB, the default receive limit of gRPC servers.
        artifact_uploader: optional store for oversized artifacts (see ``ArtifactUploader``).
        span_exporter: export with this instead of OTLP (tests, custom backends).
        export: ``False`` adds only ``XRaySpanProcessor`` (another exporter already ships
            the spans, e.g. under ``opentelemetry-instrument``). ``OTEL_SDK_DISABLED=true``
            has the same effect, and the SDK's tracers record nothing.
        tracer_provider: add to this provider instead of the global one.
        set_global: make a provider created here the global one.

    Raises ``ValueError``/``TypeError`` for bad arguments or ``OTEL_*`` values (at
    start-up, naming the culprit). Calling it again while configured returns the
    provider already in use (call :func:`shutdown` first to reconfigure).
    """
    global _current
    options = build_export_options(
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        insecure=insecure,
        compression=compression,
        export_timeout_s=export_timeout,
        exit_timeout_s=exit_timeout,
        max_queue_size=max_queue_size,
        max_export_batch_size=max_export_batch_size,
        schedule_delay_millis=schedule_delay_millis,
        environ=os.environ,
    )
    with _lock:
        if _current is not None:
            log.warning("reconfigure", "xray: configure() called again; keeping the first setup")
            return _current.provider
        exporter = None
        if export and _sdk_disabled():
            log.debug("sdk-disabled", "xray: OTEL_SDK_DISABLED=true; nothing will be exported")
        elif export:
            exporter = span_exporter if span_exporter is not None else _otlp_exporter(options)
        processor = XRaySpanProcessor(
            max_value_bytes=max_value_bytes, artifact_uploader=artifact_uploader,
            max_artifact_bytes=max_artifact_bytes,
        )
        provider, owned = _provider(
            tracer_provider, service_name, max(max_value_bytes, max_artifact_bytes), options,
            set_global,
        )
        batch = None if exporter is None else _batch_processor(
            exporter, options, quiet=span_exporter is None)
        provider.add_span_processor(processor)  # before the exporting processor
        if batch is not None:
            provider.add_span_processor(batch)
            if owned:  # X-Ray's exporter is the only one on it: shed when it cannot keep up
                _shed.install(provider, batch.saturated)
        _current = _Setup(provider, owned, processor, batch, options.exit_timeout_s)
        _install_exit_hook()
    return provider


def _sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``: the SDK hands out no-op tracers, so no export thread."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _batch_processor(exporter: SpanExporter, options: ExportOptions,
                     quiet: bool = False) -> BoundedBatchSpanProcessor:
    return BoundedBatchSpanProcessor(
        exporter,
        quiet=quiet,
        max_queue_size=options.max_queue_size,
        max_export_batch_size=options.max_export_batch_size,
        schedule_delay_millis=options.schedule_delay_millis,
        shutdown_timeout_s=options.exit_timeout_s,
    )


def _install_exit_hook() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_at_exit)
        own_exports, log_filter = OwnExporterFilter(), RateLimitFilter()
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(own_exports)  # X-Ray warns itself, once
            logging.getLogger(name).addFilter(log_filter)


def flush(timeout: float = 2.0) -> bool:
    """Export what is queued, waiting at most ``timeout`` seconds.

    ``True`` if the queue was drained in time (exports may still have failed: see
    :func:`xray_otel.stats`); ``False`` on timeout. Never raises.
    """
    setup = _current
    if setup is None or setup.batch is None:
        return True
    return setup.batch.force_flush(int(timeout * 1000))


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop what :func:`configure` set up, within ``timeout`` seconds.

    Default timeout: ``configure``'s ``exit_timeout``. Idempotent; returns ``False`` if
    spans had to be abandoned. ``configure`` may be called again afterwards.
    """
    global _current
    with _lock:
        setup, _current = _current, None
    if setup is None:
        return True
    _shed.remove(setup.provider)
    budget = setup.exit_timeout_s if timeout is None else timeout
    deadline = time.monotonic() + budget
    ok = True
    try:
        if setup.batch is not None:
            ok = setup.batch.shutdown_within(budget)
        setup.processor.shutdown()
        if setup.owns_provider:
            _shutdown_provider(setup.provider, max(0.05, deadline - time.monotonic()))
    except Exception:
        log.error("shutdown", "xray: shutdown failed", exc=True)
        return False
    return ok


def _shutdown_provider(provider: TracerProvider, timeout_s: float) -> None:
    """Shut down a provider X-Ray created (other processors on it) within ``timeout_s``."""
    worker = threading.Thread(target=provider.shutdown, name="xray-provider-shutdown", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # Python 3.12 at exit: no new threads; ours are already shut down
        return
    worker.join(timeout_s)


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        shutdown()
