"""``XRaySpanProcessor``: stamps run id and step order, normalizes, guards sizes.

Works with any SDK ``TracerProvider``; ``configure()`` adds it before the exporting
processor. At span start, for a step (a span with ``xray.step.type``) that lacks them, it
stamps ``xray.run.id`` — the enclosing ``xray.run``'s id, else the trace id — and
``xray.step.seq``: 1, 2, 3, … per run in start order. The counter of an ``xray.run``
lives on the run itself (an ``itertools.count``, whose ``next`` is atomic under threads
and tasks, shared with the decorator engine, which stamps its own steps when it creates
them, so the common path costs the processor two dict lookups); for steps outside any
``xray.run`` the counter is keyed by run id here and freed when the run span (or the
trace's local root span) ends, with a bound on how many stay open. It turns unknown step
types into ``other`` (warning once per value), and shrinks start attributes of foreign
spans over the per-value size limit to a marked summary listed in ``xray.sdk.truncated``
(X-Ray's own spans are guarded when their names and values are set).

Attributes set *after* start with a raw ``span.set_attribute`` are beyond a processor's
reach (the SDK hands ``on_end`` an immutable span); values given to ``xray.record`` are
guarded when recorded, and ``xray.configure()`` also sets the SDK's
``SpanLimits.max_attribute_length`` so that no raw string can grow without bound.

Every hook is constant time (a few dict lookups and a counter per span, plus one pass
over a foreign span's start attributes), never blocks on I/O and never raises.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from xray_otel._context import RUN_KEY, TRACER_NAME, current_run
from xray_otel._guard import (
    DEFAULT_MAX_ARTIFACT_BYTES,
    DEFAULT_MAX_VALUE_BYTES,
    ArtifactUploader,
    SizeGuard,
    set_active_guard,
)
from xray_otel._ratelimit import log
from xray_otel._stats import COUNTERS
from xray_otel._values import normalize_step_type
from xray_otel.conventions import (
    RUN_ID,
    RUN_PIPELINE,
    SDK_TRUNCATED,
    STEP_SEQ,
    STEP_TYPE,
    STEP_TYPES,
)

DEFAULT_MAX_OPEN_RUNS: Final = 10_000


def _trace_run_id(span: ReadableSpan) -> str | None:
    """The trace id as 32 lowercase hex digits: the run id of a span outside any run."""
    ctx = span.context
    return format(ctx.trace_id, "032x") if ctx is not None else None


class XRaySpanProcessor(SpanProcessor):
    """Stamps ``xray.run.id``/``xray.step.seq``, normalizes step types, guards value sizes.

    Args:
        max_value_bytes: per-value limit (UTF-8 bytes) for string and bytes attributes.
        max_artifact_bytes: the limit for ``xray.artifact.*`` values (default 2 MiB).
        artifact_uploader: optional hook that takes oversized artifacts instead of
            truncating them (see :class:`ArtifactUploader`).
        max_open_runs: bound on runs with a live step counter (oldest evicted first).

    Creating one also makes its limits the ones ``xray.record`` applies.
    """

    def __init__(
        self,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        artifact_uploader: ArtifactUploader | None = None,
        max_open_runs: int = DEFAULT_MAX_OPEN_RUNS,
        max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    ) -> None:
        if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int):
            raise TypeError("max_value_bytes must be an int")
        if max_value_bytes < 1024:
            raise ValueError("max_value_bytes must be at least 1024")
        if isinstance(max_artifact_bytes, bool) or not isinstance(max_artifact_bytes, int):
            raise TypeError("max_artifact_bytes must be an int")
        if artifact_uploader is not None and not callable(
            getattr(artifact_uploader, "upload", None)
        ):
            raise TypeError(
                "artifact_uploader must have an upload(name, data, content_type) method"
            )
        if max_open_runs < 1:
            raise ValueError("max_open_runs must be positive")
        self._guard = SizeGuard(max_value_bytes, artifact_uploader, max_artifact_bytes)
        self._max_open_runs = max_open_runs
        self._counters: dict[str, itertools.count[int]] = {}
        self._evict_lock = threading.Lock()
        self._shutdown = False
        set_active_guard(self._guard)

    # --- hooks --------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Stamp and guard ``span``; runs on the caller's thread, never blocks or raises."""
        if self._shutdown:
            return
        try:
            scope = span.instrumentation_scope
            own = scope is not None and scope.name == TRACER_NAME
            if own and parent_context is not None and RUN_KEY in parent_context:
                return  # a step of X-Ray's inside a run: stamped and guarded at creation
            attrs = span.attributes
            if not attrs:
                return
            if STEP_TYPE in attrs:
                if STEP_SEQ not in attrs:
                    self._stamp_step(span, attrs, parent_context)
            elif RUN_PIPELINE in attrs and RUN_ID not in attrs:
                span.set_attribute(RUN_ID, _trace_run_id(span) or "")
            if not own:
                self._guard_values(span, attrs)
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("processor-start", "xray: XRaySpanProcessor.on_start failed", exc=True)

    def on_end(self, span: ReadableSpan) -> None:
        """Free the step counter of a run whose run span (or local root span) ended."""
        if not self._counters:
            return
        try:
            attrs = span.attributes or {}
            if RUN_PIPELINE in attrs and STEP_TYPE not in attrs:
                self._counters.pop(str(attrs.get(RUN_ID)), None)
            parent = span.parent
            if parent is None or parent.is_remote:
                self._counters.pop(_trace_run_id(span) or "", None)
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("processor-end", "xray: XRaySpanProcessor.on_end failed", exc=True)

    def shutdown(self) -> None:
        """Stop stamping and free all counters (idempotent)."""
        self._shutdown = True
        self._counters.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: always ``True`` at once."""
        return True

    # --- helpers ------------------------------------------------------------------------

    def _stamp_step(
        self,
        span: Span,
        attrs: Mapping[str, object],
        parent_context: Context | None,
    ) -> None:
        updates: dict[str, str | int] = {}
        step_type = attrs.get(STEP_TYPE)
        if step_type.__class__ is not str or step_type not in STEP_TYPES:
            updates[STEP_TYPE] = normalize_step_type(step_type)
        run = current_run(parent_context)
        run_id = attrs.get(RUN_ID)
        if run is not None and run_id in (None, run.id):
            updates[RUN_ID] = run.id
            if RUN_PIPELINE not in attrs:
                updates[RUN_PIPELINE] = run.pipeline
            updates[STEP_SEQ] = run.next_seq()
        else:
            key = str(run_id) if run_id is not None else _trace_run_id(span) or ""
            updates[RUN_ID] = key
            updates[STEP_SEQ] = self._next_seq(key)
        span.set_attributes(updates)

    def _next_seq(self, run_id: str) -> int:
        counter = self._counters.get(run_id)
        if counter is None:
            if len(self._counters) >= self._max_open_runs:
                self._evict_oldest()
            counter = self._counters.setdefault(run_id, itertools.count(1))
        return next(counter)

    def _evict_oldest(self) -> None:
        with self._evict_lock:
            try:
                del self._counters[next(iter(self._counters))]
            except (KeyError, RuntimeError, StopIteration):
                return
        log.warning("evict", "xray: more than %d open runs; forgot the oldest", self._max_open_runs)

    def _guard_values(self, span: Span, attrs: Mapping[str, object]) -> None:
        guard = self._guard
        shrunk: dict[str, object] = {}
        truncated: list[str] = []
        for name, value in attrs.items():
            if guard.may_exceed(value):
                new, was_truncated = guard.shrink(name, value)
                if new is not value:
                    shrunk[name] = new
                if was_truncated:
                    truncated.append(name)
        if truncated:
            shrunk[SDK_TRUNCATED] = [*(attrs.get(SDK_TRUNCATED) or ()), *truncated]  # type: ignore[misc]
        if shrunk:
            span.set_attributes(shrunk)  # type: ignore[arg-type]
