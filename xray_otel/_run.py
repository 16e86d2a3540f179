"""``xray.run``: the run context, sync or async, that opens the run span.

The run span carries ``xray.run.pipeline``, ``xray.run.entity`` and ``xray.run.id`` (a
fresh uuid4 hex unless given). While the run is active its span is the current span and
the run itself is stored in the OpenTelemetry context, so every step started inside it —
in the same thread, in asyncio tasks, or in threads reached through
:func:`xray_otel.propagate` — is its child and carries its id. API-only.
"""

from __future__ import annotations

import itertools
import uuid
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from xray_otel import _shed
from xray_otel._context import RUN_KEY, STEP_KEY, Tracing, tracing_for
from xray_otel._ratelimit import log
from xray_otel._record import guard_attributes
from xray_otel._spans import end_span
from xray_otel._stats import COUNTERS
from xray_otel._values import clean_text
from xray_otel.conventions import RUN_ENTITY, RUN_ID, RUN_PIPELINE, RUN_VERSION


class Run:
    """One pipeline run: the context manager returned by :func:`run` and its handle.

    ``with xray.run("competitor_search", entity=asin) as r:`` (or ``async with``);
    ``r.id`` is the run id. A ``Run`` is meant to be entered once.
    """

    __slots__ = ("_provider", "_seq", "_token", "entity", "id", "pipeline", "span", "tracing",
                 "version")

    def __init__(
        self,
        pipeline: str,
        entity: str | None,
        run_id: str | None,
        provider: trace.TracerProvider | None,
        version: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.entity = entity
        self.version = version
        self.id = run_id or uuid.uuid4().hex
        self.span: trace.Span = trace.INVALID_SPAN
        self.tracing: Tracing | None = None
        self._provider = provider
        self._token: object | None = None
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        """The next ``xray.step.seq`` of this run (atomic: safe from any thread or task)."""
        return next(self._seq)

    def __repr__(self) -> str:
        return f"Run(pipeline={self.pipeline!r}, entity={self.entity!r}, id={self.id!r})"

    def __enter__(self) -> Run:
        try:
            if self._token is not None:
                log.warning("run-reentered", "xray: a Run was entered twice; ignoring")
                return self
            parent = otel_context.get_current()
            self.tracing = tracing_for(self._provider)
            attrs: dict[str, AttributeValue] = {RUN_PIPELINE: self.pipeline, RUN_ID: self.id}
            if self.entity is not None:
                attrs[RUN_ENTITY] = self.entity
            if self.version is not None:
                attrs[RUN_VERSION] = self.version
            guard_attributes(self.span, attrs)  # names the pipeline chose: keep them sane
            self.pipeline, self.id = str(attrs[RUN_PIPELINE]), str(attrs[RUN_ID])
            if _shed.shedding(self.tracing.provider):
                COUNTERS.add("dropped")
                ctx = parent
            else:
                tracer = self.tracing.tracer
                self.span = tracer.start_span(self.pipeline, context=parent, attributes=attrs)
                ctx = trace.set_span_in_context(self.span, parent)
            ctx = otel_context.set_value(STEP_KEY, None, otel_context.set_value(RUN_KEY, self, ctx))
            self._token = otel_context.attach(ctx)
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("run-enter", "xray: starting the run failed", exc=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception:
                log.error("run-detach", "xray: leaving the run context failed", exc=True)
        end_span(self.span, exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def run(
    pipeline: str,
    *,
    entity: str | None = None,
    run_id: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    version: str | None = None,
) -> Run:
    """Open a run of ``pipeline`` about ``entity``: ``with xray.run("search", entity=asin):``.

    Args:
        pipeline: the pipeline's name (``xray.run.pipeline``).
        entity: what this run is about, e.g. an ASIN (``xray.run.entity``).
        run_id: use this id instead of a fresh uuid4 hex (``xray.run.id``).
        version: the pipeline's version (``xray.run.version``); absent, the collector
            uses the resource's ``service.version``. Funnel diffs compare versions.
        tracer_provider: the provider to create spans with; default the global one.
            Steps inside the run use the run's provider.

    Never raises: odd arguments are converted to strings.
    """
    try:
        return Run(
            clean_text(pipeline) or "unnamed",
            None if entity is None else clean_text(entity),
            None if run_id is None else clean_text(run_id),
            tracer_provider,
            None if version is None else clean_text(version),
        )
    except Exception:
        COUNTERS.add("internal_errors")
        log.error("run-args", "xray: bad run() arguments", exc=True)
        return Run("unnamed", None, None, tracer_provider)
