"""The export path: a bounded, counting, never-raising front for ``BatchSpanProcessor``.

``BoundedBatchSpanProcessor`` sits in front of the SDK's ``BatchSpanProcessor`` and
knows its queue bound: it counts the spans it has queued and not yet handed to the
exporter, and drops (and counts) a span itself when that number reaches the bound, so
the SDK queue never overflows. It does not touch the SDK's private internals.
``CountingSpanExporter`` wraps the real exporter: counts exported and failed spans,
swallows exceptions, logs failures rate-limited, and can be *aborted* so that exit never
waits on a dead collector. After a failed export it pauses the export worker for a
cool-down (1 s, doubling up to 30 s, reset by a success) before the next attempt: while
the collector is down, spans wait in the bounded queue (overflow is dropped and counted
on the pipeline's thread, which is cheap) instead of being serialized again and again
for a collector that is not there — a dead collector makes X-Ray cheaper, not dearer.
Once the queue is full as well, ``saturated()`` says so and X-Ray stops building spans
at all until the exporter gets through again (``_shed``).
``force_flush`` and ``shutdown`` honour their deadlines by running the SDK's (unbounded)
calls in a daemon thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from xray_otel._options import (
    DEFAULT_EXIT_TIMEOUT_S,
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE,
)
from xray_otel._ratelimit import log
from xray_otel._stats import COUNTERS, Counters

MIN_COOLDOWN_S: Final = 1.0
MAX_COOLDOWN_S: Final = 30.0
STRUGGLING_AFTER_S: Final = 1.0
"""An export still running after this long counts as failing (a healthy one takes ms)."""
MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024 - 64 * 1024
"""Budget of one export request: under gRPC's default 4 MiB receive limit, with headroom."""
_SPAN_OVERHEAD_BYTES: Final = 256


def estimated_size(span: ReadableSpan) -> int:
    """A cheap upper-ish estimate of a span's encoded size, from its attribute values."""
    size = _SPAN_OVERHEAD_BYTES + len(span.name)
    for key, value in (span.attributes or {}).items():
        size += len(key) + 8
        if isinstance(value, str):
            size += len(value) * (1 if value.isascii() else 4)
        elif isinstance(value, bytes):
            size += len(value)
        elif isinstance(value, tuple | list):
            size += sum(len(v) if isinstance(v, str | bytes) else 10 for v in value)
        else:
            size += 10
    for event in span.events:
        size += _SPAN_OVERHEAD_BYTES + sum(
            len(k) + len(str(v)) for k, v in (event.attributes or {}).items())
    return size


def split_by_size(spans: Sequence[ReadableSpan], budget: int) -> list[Sequence[ReadableSpan]]:
    """Consecutive chunks of ``spans``, each within ``budget`` bytes (a larger span alone)."""
    chunks: list[Sequence[ReadableSpan]] = []
    start, used = 0, 0
    for i, span in enumerate(spans):
        size = estimated_size(span)
        if i > start and used + size > budget:
            chunks.append(spans[start:i])
            start, used = i, 0
        used += size
    if start < len(spans):
        chunks.append(spans[start:])
    return chunks


_EXPORTING = threading.local()
"""``active`` is true on a thread while it runs an exporter X-Ray created itself."""


class OwnExporterFilter(logging.Filter):
    """Drops what the OTLP exporters log while exporting for X-Ray (retry lines, errors).

    Only records logged on a thread inside an export by an exporter X-Ray created are
    dropped; the same exporters used elsewhere in the program log as usual. X-Ray says
    itself, rate limited, that exports fail, and counts them in ``xray.stats()``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_EXPORTING, "active", False)


class CountingSpanExporter(SpanExporter):
    """Counts what the wrapped exporter did; never raises; can be aborted.

    Each export is split into requests of at most ``max_request_bytes`` (estimated), so a
    batch of large values never exceeds a receiver's message limit.
    """

    def __init__(
        self,
        inner: SpanExporter,
        counters: Counters = COUNTERS,
        on_handover: Callable[[int], int] | None = None,
        quiet: bool = False,
    ) -> None:
        self._inner = inner
        self._quiet = quiet
        """``inner`` was created by X-Ray: its own log lines are dropped while it exports."""
        self.max_request_bytes = MAX_REQUEST_BYTES
        self._counters = counters
        self._on_handover = on_handover
        self._aborted = False
        self._wake = threading.Event()
        self._cooldown_s = 0.0
        self._resume_at = 0.0
        self._final = False
        self._lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_since = 0.0
        self._shutdown_once = threading.Lock()
        self._shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export on the worker thread; may wait out a cool-down first. Never raises."""
        n = len(spans)
        taken = self._on_handover(n) if self._on_handover is not None else n
        pause = self._resume_at - time.monotonic()
        if pause > 0 and not self._aborted:
            self._wake.wait(pause)
            self._wake.clear()
        with self._lock:
            if self._aborted:
                self._counters.add("dropped", taken)
                return SpanExportResult.FAILURE
            self._in_flight = n
            self._in_flight_since = time.monotonic()
        _EXPORTING.active = self._quiet
        try:
            result = SpanExportResult.SUCCESS
            for chunk in split_by_size(spans, self.max_request_bytes):
                result = self._inner.export(chunk)
                if result is not SpanExportResult.SUCCESS:
                    break
        except Exception:
            result = SpanExportResult.FAILURE
            log.error("export-raised", "xray: span exporter raised; %d spans lost", n, exc=True)
        finally:
            _EXPORTING.active = False
        return self._settle(n, result)

    def _settle(self, n: int, result: SpanExportResult) -> SpanExportResult:
        """Count the outcome of an export, unless ``abort`` already wrote the spans off."""
        with self._lock:
            if not self._in_flight:
                return SpanExportResult.FAILURE
            self._in_flight = 0
            if result is SpanExportResult.SUCCESS:
                self._counters.add("exported", n)
                self._cooldown_s = 0.0
                return result
            self._counters.add("failed", n)
            if self._final:  # shutting down and the collector just failed: stop trying
                self._aborted = True
            self._cooldown_s = min(MAX_COOLDOWN_S, max(MIN_COOLDOWN_S, self._cooldown_s * 2))
            self._resume_at = time.monotonic() + self._cooldown_s
        log.warning("export-failed", "xray: exporting %d spans failed (collector down?)", n)
        return SpanExportResult.FAILURE

    def failing(self) -> bool:
        """Whether the collector looks unreachable: the last export failed, or the current
        one has run longer than :data:`STRUGGLING_AFTER_S`. Lock-free (a stale read is
        harmless); called on the pipeline's thread."""
        if self._cooldown_s:  # set by a failure, cleared by a success
            return True
        return bool(self._in_flight) and (
            time.monotonic() - self._in_flight_since > STRUGGLING_AFTER_S
        )

    def resume_now(self, *, final: bool = False) -> None:
        """End a cool-down early: a flush or shutdown wants one more attempt now.

        ``final`` (shutdown): after the next failure, drop the rest instead of retrying.
        """
        self._final = self._final or final
        self._resume_at = 0.0
        self._wake.set()

    def abort(self) -> None:
        """Give up: write off the export in flight (counted as dropped, so the counters are
        final when shutdown returns), fail further exports at once, stop the retries."""
        with self._lock:
            self._aborted = True
            written_off, self._in_flight = self._in_flight, 0
        if written_off:
            self._counters.add("dropped", written_off)
        self._wake.set()
        self.shutdown()

    def shutdown(self) -> None:
        with self._shutdown_once:
            if self._shut:
                return
            self._shut = True
        try:
            self._inner.shutdown()
        except Exception:
            log.error("exporter-shutdown", "xray: span exporter shutdown raised", exc=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self._inner.force_flush(timeout_millis))
        except Exception:
            log.error("exporter-flush", "xray: span exporter force_flush raised", exc=True)
            return False


def _in_daemon_thread(name: str, target: Callable[[], object]) -> threading.Event:
    """Run ``target`` in a daemon thread; the returned event is set when it returns."""
    helper = _StandbyThread(name, target)
    return helper.start()


class _StandbyThread:
    """A daemon thread started *now* that runs ``target`` once, when asked.

    Shutdown runs at interpreter exit, where Python 3.12 refuses to start threads; so the
    thread that will run the SDK's (unbounded) shutdown is started in advance and waits.
    """

    def __init__(self, name: str, target: Callable[[], object]) -> None:
        self._target = target
        self._go = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        self._go.wait()
        try:
            self._target()
        except Exception:
            log.error(
                ("thread", threading.current_thread().name),
                "xray: background task raised",
                exc=True,
            )
        finally:
            self.done.set()

    def start(self) -> threading.Event:
        """Let the thread run ``target``; the returned event is set when it returns."""
        self._go.set()
        return self.done


def _call_if_alive(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


class BoundedBatchSpanProcessor(SpanProcessor):
    """``BatchSpanProcessor`` with counted drops and deadline-honouring flush/shutdown.

    ``on_end`` runs on the pipeline's thread, holds a lock only for an integer
    comparison, never blocks on I/O and never raises.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        schedule_delay_millis: float | None = None,
        shutdown_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        counters: Counters = COUNTERS,
        quiet: bool = False,
    ) -> None:
        self._counters = counters
        self._max_queue_size = max_queue_size
        self._shutdown_timeout_s = shutdown_timeout_s
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._flush_done: threading.Event | None = None
        self.exporter = CountingSpanExporter(exporter, counters, self._handed_over, quiet)
        self._standby_shutdown = _StandbyThread("xray-shutdown", self._bsp_shutdown)
        if hasattr(os, "register_at_fork"):  # the SDK empties its queue in a forked child
            forget = weakref.WeakMethod(self._forget_queue)
            os.register_at_fork(after_in_child=lambda: _call_if_alive(forget))
        self._bsp = BatchSpanProcessor(
            self.exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=schedule_delay_millis,
        )

    def _forget_queue(self) -> None:
        """In a forked child: the SDK emptied its queue and our threads are gone."""
        self._lock = threading.Lock()
        self._pending = 0
        self._flush_done = None
        self._standby_shutdown = _StandbyThread("xray-shutdown", self._bsp_shutdown)

    def _bsp_shutdown(self) -> None:
        self._bsp.shutdown()  # type: ignore[no-untyped-call]

    def _handed_over(self, n: int) -> int:
        """The exporter got ``n`` spans; return how many of them were still counted as queued."""
        with self._lock:
            taken = min(n, self._pending)
            self._pending -= taken
        return taken

    def saturated(self) -> bool:
        """Whether a span ended now would be dropped for want of room, the collector
        failing: the queue is full and the exporter is not getting through. X-Ray then
        sheds its spans instead of building them (``_shed``). Lock-free; never raises."""
        return self._pending >= self._max_queue_size and self.exporter.failing()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if span.context is None or not span.context.trace_flags.sampled:
                return
            with self._lock:
                accepted = not self._closed and self._pending < self._max_queue_size
                if accepted:
                    self._pending += 1
            if not accepted:
                self._counters.add("dropped")
                log.warning("queue-full", "xray: export queue full or closed; dropping spans")
                return
            self._bsp.on_end(span)
        except Exception:
            self._counters.add("internal_errors")
            log.error("bsp-on-end", "xray: queueing a span for export failed", exc=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued; return ``False`` if that takes longer than the timeout."""
        try:
            with self._lock:
                if self._closed:
                    return False
                done = self._flush_done
                self.exporter.resume_now()
                if done is None or done.is_set():
                    done = _in_daemon_thread("xray-flush", self._bsp.force_flush)
                    self._flush_done = done
            return done.wait(max(0.0, timeout_millis / 1000))
        except Exception:
            log.error("flush", "xray: force_flush failed", exc=True)
            return False

    def shutdown(self) -> None:
        """Flush and stop, waiting at most the configured shutdown timeout (idempotent)."""
        self.shutdown_within(self._shutdown_timeout_s)

    def shutdown_within(self, timeout_s: float) -> bool:
        """Flush and stop within ``timeout_s``; ``False`` if spans had to be abandoned."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        self.exporter.resume_now(final=True)
        finished = False
        try:
            finished = self._standby_shutdown.start().wait(timeout_s)
        except Exception:
            log.error("shutdown", "xray: shutting down the span exporter failed", exc=True)
        if not finished:
            self.exporter.abort()
            log.warning(
                "shutdown-timeout", "xray: export did not finish in %.1fs; dropping", timeout_s
            )
        with self._lock:
            leftover, self._pending = self._pending, 0
        if leftover:
            self._counters.add("dropped", leftover)
        return finished
