"""Ending a span as X-Ray does: a user's exception becomes status ERROR and an event.

Shared by runs and steps. ``GeneratorExit`` (a generator closed early) is not an error.
Never raises.
"""

from __future__ import annotations

from opentelemetry.trace import Span, Status, StatusCode

from xray_otel._ratelimit import log
from xray_otel._stats import COUNTERS
from xray_otel._values import safe_repr

_MAX_DESCRIPTION = 1000


def describe(exc: BaseException) -> str:
    """``"ValueError: message"``, shortened and never raising."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = safe_repr(exc)
    return text if len(text) <= _MAX_DESCRIPTION else text[:_MAX_DESCRIPTION] + "…"


def end_span(span: Span, exc: BaseException | None) -> None:
    """Record ``exc`` (if any, and not ``GeneratorExit``) on ``span`` and end it."""
    try:
        if exc is not None and not isinstance(exc, GeneratorExit) and span.is_recording():
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, describe(exc)))
        span.end()
    except Exception:
        COUNTERS.add("internal_errors")
        log.error("span-end", "xray: ending a span failed", exc=True)
