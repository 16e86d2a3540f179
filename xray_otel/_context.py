"""Where the current run and step live: in the OpenTelemetry context, next to the span.

Keeping X-Ray's state inside the OpenTelemetry ``Context`` (not in separate
contextvars) means anything that carries that context — asyncio tasks, :func:`propagate`,
OpenTelemetry's own threading instrumentation — carries the run and the step too. This
module also resolves the tracer a run or step should use. API-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace

if TYPE_CHECKING:
    from xray_otel._run import Run
    from xray_otel._step import Step

TRACER_NAME: Final = "xray_otel"

RUN_KEY: Final = otel_context.create_key("xray-run")
STEP_KEY: Final = otel_context.create_key("xray-step")


class Tracing(NamedTuple):
    """The provider a run or step creates its span with, and X-Ray's tracer from it."""

    provider: trace.TracerProvider
    tracer: trace.Tracer


_global_tracing: Tracing | None = None


def current_run(ctx: otel_context.Context | None = None) -> Run | None:
    """The innermost X-Ray run of ``ctx`` (default: the current context)."""
    return otel_context.get_value(RUN_KEY, ctx)  # type: ignore[return-value]


def current_step() -> Step | None:
    """The innermost X-Ray step of the current context."""
    return otel_context.get_current().get(STEP_KEY)  # type: ignore[return-value]


def current_run_id() -> str | None:
    """The id of the innermost X-Ray run around the caller, or ``None`` outside any run."""
    run = current_run()
    return run.id if run is not None else None


def tracing_for(provider: trace.TracerProvider | None) -> Tracing:
    """X-Ray's tracer from ``provider``, or from the global provider (cached per provider)."""
    global _global_tracing
    if provider is not None:
        return Tracing(provider, provider.get_tracer(TRACER_NAME))
    current = trace.get_tracer_provider()
    cached = _global_tracing
    if cached is not None and cached.provider is current:
        return cached
    tracing = Tracing(current, current.get_tracer(TRACER_NAME))
    _global_tracing = tracing
    return tracing
