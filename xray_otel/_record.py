"""``xray.record``: validate what a step reports and turn it into ``xray.step.*`` attributes.

Every value is validated, serialized and size-guarded here, at record time, on the
pipeline's thread; whatever is wrong is dropped or repaired, counted and logged (rate
limited), never raised. Outside an X-Ray step ``record`` is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from xray_otel import _values
from xray_otel._context import current_step
from xray_otel._guard import active_guard
from xray_otel._ratelimit import log
from xray_otel._stats import COUNTERS
from xray_otel.conventions import (
    SDK_TRUNCATED,
    STEP_CANDIDATES_IN,
    STEP_CANDIDATES_OUT,
    STEP_INPUT,
    STEP_OUTPUT,
    STEP_WHY,
    STEP_WHY_JSON,
    artifact_attribute,
    metric_attribute,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue


def record(
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
    """Record facts about the current X-Ray step; see :meth:`xray_otel.Step.record`.

    ``None`` means "not given". Outside any X-Ray step this does nothing (and logs
    a rate-limited debug message). Never raises.
    """
    step = current_step()
    if step is None:
        log.debug("record-outside-step", "X-Ray record() called outside an X-Ray step; ignored")
        return
    step.record(
        candidates_in=candidates_in,
        candidates_out=candidates_out,
        why=why,
        why_json=why_json,
        input=input,
        output=output,
        metrics=metrics,
        artifacts=artifacts,
    )


def build_attributes(
    candidates_in: object,
    candidates_out: object,
    why: object,
    why_json: object,
    input: object,
    output: object,
    metrics: object,
    artifacts: object,
) -> dict[str, AttributeValue]:
    """The ``xray.step.*`` attributes for the given facts, validated and serialized."""
    attrs: dict[str, AttributeValue] = {}
    if (
        candidates_in is not None
        and (n := _values.count_value("candidates_in", candidates_in)) is not None
    ):
        attrs[STEP_CANDIDATES_IN] = n
    if (
        candidates_out is not None
        and (n := _values.count_value("candidates_out", candidates_out)) is not None
    ):
        attrs[STEP_CANDIDATES_OUT] = n
    if why is not None:
        attrs[STEP_WHY] = _values.clean_text(why)
    if why_json is not None:
        attrs[STEP_WHY_JSON] = _values.to_json(
            why_json if isinstance(why_json, Mapping) else {"value": why_json}
        )
    if input is not None:
        attrs[STEP_INPUT] = _values.to_json(input)
    if output is not None:
        attrs[STEP_OUTPUT] = _values.to_json(output)
    if metrics is not None:
        _add_named(attrs, "metrics", metrics, metric_attribute, _values.metric_value)
    if artifacts is not None:
        _add_named(attrs, "artifacts", artifacts, artifact_attribute, _values.artifact_value)
    return attrs


def _add_named(
    attrs: dict[str, AttributeValue],
    what: str,
    values: object,
    attribute: Callable[[str], str],
    convert: Callable[[str, object], AttributeValue | None],
) -> None:
    """Add a ``{name: value}`` family (metrics, artifacts) under prefixed attribute names."""
    if not isinstance(values, Mapping):
        _values.reject(what, values, "expected a mapping of name to value")
        return
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            _values.reject(what, name, "names must be non-empty strings")
            continue
        converted = convert(name, value)
        if converted is not None:
            attrs[attribute(name)] = converted


def guard_attributes(span: Span, attrs: dict[str, AttributeValue]) -> None:
    """Shrink oversized values in place and list their names under ``xray.sdk.truncated``."""
    guard = active_guard()
    small = guard.max_value_bytes // 4
    truncated: list[str] = []
    for name, value in attrs.items():
        kind = type(value)
        if kind is int or kind is float or (kind is str and len(value) <= small):  # type: ignore[arg-type]
            continue
        if guard.may_exceed(value):
            shrunk, was_truncated = guard.shrink(name, value)
            attrs[name] = shrunk  # type: ignore[assignment]
            if was_truncated:
                truncated.append(name)
    if truncated:
        existing = getattr(span, "attributes", None) or {}
        previous = existing.get(SDK_TRUNCATED) or ()
        merged = list(dict.fromkeys([*previous, *truncated]))
        attrs[SDK_TRUNCATED] = merged


def apply(span: Span, attrs: dict[str, AttributeValue]) -> None:
    """Guard and set ``attrs`` on ``span`` in one call; swallow and count any failure."""
    if not attrs:
        return
    try:
        guard_attributes(span, attrs)
        span.set_attributes(attrs)
    except Exception:
        COUNTERS.add("internal_errors")
        log.error("record-apply", "xray: could not set step attributes", exc=True)
