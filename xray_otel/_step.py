"""``xray.step``: one engine for steps as decorators and as (async) context managers.

``step(type, ...)`` returns a :class:`StepSpec`. Used as a decorator it wraps plain
functions, coroutine functions, generator functions and async generator functions;
used in ``with``/``async with`` it opens a step around the block. Every form goes
through the same :class:`Step` scope: open the span (``xray.step.type``,
``xray.step.name``, and the enclosing run's ``xray.run.id``/``xray.run.pipeline``), make
it current, record the user's exception (status ERROR + exception event) and re-raise
that very object, end the span. Misuse of the decorator raises at decoration time;
nothing in the running path raises. API-only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from xray_otel import _shed, _wrappers
from xray_otel._context import RUN_KEY, STEP_KEY, Tracing, current_step, tracing_for
from xray_otel._guard import active_guard
from xray_otel._ratelimit import log
from xray_otel._record import apply, build_attributes
from xray_otel._spans import end_span
from xray_otel._stats import COUNTERS
from xray_otel._values import clean_text, normalize_step_type, validate_step_type
from xray_otel.conventions import (
    RUN_ID,
    RUN_PIPELINE,
    STEP_CANDIDATES_IN,
    STEP_CANDIDATES_OUT,
    STEP_NAME,
    STEP_SEQ,
    STEP_TYPE,
    StepType,
)

if TYPE_CHECKING:
    from xray_otel._run import Run

F = TypeVar("F", bound=Callable[..., Any])
_NOT_COLLECTIONS = (str, bytes, bytearray, memoryview)


def _size_of(value: object) -> int | None:
    """``len(value)`` for a sized, iterable, non-string value, else ``None``."""
    if isinstance(value, _NOT_COLLECTIONS) or not hasattr(value, "__iter__"):
        return None
    try:
        return len(value)  # type: ignore[arg-type]
    except Exception:
        return None


def _count_in(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    for value in (*args, *kwargs.values()):
        size = _size_of(value)
        if size is not None:
            return size
    return None


def _short(text: str) -> str:
    """``text`` within the per-value size limit (a step name is also the span name)."""
    guard = active_guard()
    return str(guard.shrink(STEP_NAME, text)[0]) if guard.may_exceed(text) else text


class Step:
    """One running X-Ray step: what ``with xray.step(...) as s`` yields.

    ``s.record(...)`` is :func:`xray_otel.record` aimed at this step; ``s.span`` is the
    OpenTelemetry span, for anything else.
    """

    __slots__ = ("_counted", "_ctx", "_explicit_out", "_spec", "_token", "name", "span", "type")

    def __init__(self, spec: StepSpec | None, name: str, step_type: str) -> None:
        self._spec = spec
        self.name = name
        self.type = step_type
        self.span: trace.Span = trace.INVALID_SPAN
        self._ctx: otel_context.Context | None = None
        self._token: object | None = None
        self._explicit_out = False
        self._counted = 0

    def __repr__(self) -> str:
        return f"Step(type={self.type!r}, name={self.name!r})"

    def record(
        self,
        *,
        candidates_in: int | None = None,
        candidates_out: int | None = None,
        why: str | None = None,
        why_json: Mapping[str, Any] | None = None,
        input: Any = None,
        output: Any = None,
        metrics: Mapping[str, int | float] | None = None,
        artifacts: Mapping[str, str | bytes] | None = None,
    ) -> None:
        """Record facts on this step; ``None`` means "not given". Never raises.

        Counts must be non-negative ints; ``why_json`` (a mapping, anything else is
        wrapped as ``{"value": ...}``), ``input`` and ``output`` are serialized to JSON
        (unserializable objects become readable ``repr`` strings); metrics must be
        finite int/float (NaN, inf, bools and strings are dropped with a warning);
        artifacts are str or bytes. Oversized values are truncated to a marked summary.
        """
        if not self.span.is_recording():
            return
        try:
            attrs = build_attributes(
                candidates_in, candidates_out, why, why_json, input, output, metrics, artifacts
            )
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("record", "xray: record() failed", exc=True)
            return
        if STEP_CANDIDATES_OUT in attrs:
            self._explicit_out = True
        apply(self.span, attrs)

    # --- the engine -------------------------------------------------------------------

    def _open(self, explicit: Tracing | None, counted_in: int | None) -> Step:
        parent = otel_context.get_current()
        run: Run | None = parent.get(RUN_KEY)  # type: ignore[assignment]  # Context is a dict
        tracing = explicit or (run.tracing if run is not None else None) or tracing_for(None)
        seq = run.next_seq() if run is not None else None  # taken even when shed: a gap
        if _shed.shedding(tracing.provider):
            COUNTERS.add("dropped")
            self._ctx = otel_context.set_value(STEP_KEY, self, parent)
            return self
        attrs: dict[str, str | int] = {STEP_TYPE: self.type, STEP_NAME: self.name}
        if run is not None and seq is not None:
            attrs[RUN_ID] = run.id
            attrs[RUN_PIPELINE] = run.pipeline
            attrs[STEP_SEQ] = seq
        if counted_in is not None:
            attrs[STEP_CANDIDATES_IN] = counted_in
        self.span = tracing.tracer.start_span(self.name, context=parent, attributes=attrs)
        self._ctx = otel_context.set_value(
            STEP_KEY, self, trace.set_span_in_context(self.span, parent)
        )
        return self

    def _activate(self) -> None:
        if self._ctx is not None:
            self._token = otel_context.attach(self._ctx)

    def _deactivate(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def _count_item(self) -> None:
        self._counted += 1

    def _set_result(self, result: object) -> None:
        if self._spec is not None and self._spec.count_candidates and not self._explicit_out:
            size = _size_of(result)
            if size is not None and self.span.is_recording():
                try:
                    self.span.set_attribute(STEP_CANDIDATES_OUT, size)
                except Exception:
                    COUNTERS.add("internal_errors")
                self._explicit_out = True

    def _finish(self, exc: BaseException | None) -> None:
        """Deactivate (if active) and end the span; never raises."""
        try:
            self._deactivate()
            self._ctx = None  # the context holds this step: break the cycle early
            spec = self._spec
            if self._counted and not self._explicit_out and spec and spec.count_candidates:
                self.span.set_attribute(STEP_CANDIDATES_OUT, self._counted)
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("step-finish", "xray: finishing a step failed", exc=True)
        end_span(self.span, exc)

    def __enter__(self) -> Step:
        try:
            self._activate()
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("step-enter", "xray: entering a step failed", exc=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(exc)


class StepSpec:
    """What :func:`step` returns: a decorator, and a ``with``/``async with`` context."""

    __slots__ = ("_error", "_tracing", "count_candidates", "name", "type")

    def __init__(
        self,
        step_type: object,
        name: object,
        count_candidates: object,
        provider: trace.TracerProvider | None,
    ) -> None:
        self._error: Exception | None = None
        self._tracing = tracing_for(provider) if provider is not None else None
        try:
            self.type = validate_step_type(step_type)
            if name is not None and not isinstance(name, str):
                raise TypeError(f"xray step name must be a str, got {type(name).__name__}")
            if not isinstance(count_candidates, bool):
                raise TypeError("count_candidates must be True or False")
        except (TypeError, ValueError) as exc:
            self._error = exc
            self.type = normalize_step_type(step_type)
        self.name = _short(clean_text(name)) if name is not None else None
        self.count_candidates = count_candidates is True

    def open(
        self, name: str, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Step:
        """A started (not yet current) step; a no-op step if X-Ray fails. Never raises."""
        step = Step(self, name, self.type)
        try:
            counted = _count_in(args, kwargs or {}) if self.count_candidates else None
            return step._open(self._tracing, counted)
        except Exception:
            COUNTERS.add("internal_errors")
            log.error("step-open", "xray: starting a step failed", exc=True)
            return step

    def __call__(self, fn: F) -> F:
        if self._error is not None:
            raise self._error
        if not callable(fn) or inspect.isclass(fn):
            raise TypeError(f"@xray.step(...) must decorate a function, got {fn!r}")
        name = self.name or str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", fn))
        if inspect.isasyncgenfunction(fn):
            return _wrappers.wrap_async_generator(self, fn, name)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return _wrappers.wrap_generator(self, fn, name)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):
            return _wrappers.wrap_coroutine(self, fn, name)  # type: ignore[return-value]
        return _wrappers.wrap_function(self, fn, name)  # type: ignore[return-value]

    def __enter__(self) -> Step:
        if self._error is not None:
            log.warning(("step-misuse", str(self._error)), "xray: %s", self._error)
        return self.open(self.name or self.type).__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        step = current_step()
        if step is None or step._spec is not self:
            log.error("step-exit", "xray: step context exited out of order; span left open")
            return
        step._finish(exc)

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def step(
    type: StepType | str,
    *,
    name: str | None = None,
    count_candidates: bool = False,
    tracer_provider: trace.TracerProvider | None = None,
) -> StepSpec:
    """A step of ``type`` (``llm``, ``search``, ``filter``, ``rank``, ``transform``, ``other``).

    ``@xray.step("filter")`` on a function, coroutine, generator or async generator
    (name: the function's ``__qualname__``), ``@xray.step("llm", name="pick")``, or
    ``with xray.step("rank") as s:`` (name: the type). ``count_candidates=True``
    records ``candidates_in`` from the first sized, non-string argument and
    ``candidates_out`` from the sized return value (or the number of items a generator
    yielded) unless the step records them itself. ``tracer_provider`` overrides the
    enclosing run's (or the global) provider.

    Raises ``TypeError``/``ValueError`` when decorating with a bad argument (an unknown
    type, a non-callable); as a context manager it only logs such misuse.
    """
    if callable(type) and not isinstance(type, str):
        raise TypeError("use @xray.step('<type>'), not bare @xray.step")
    return StepSpec(type, name, count_candidates, tracer_provider)
