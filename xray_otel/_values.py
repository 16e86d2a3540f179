"""Turn whatever the pipeline hands to X-Ray into valid attribute values, never raising.

Pure functions: JSON serialization that survives any object (unserializable objects
become readable ``repr`` strings, NaN becomes a string, cycles are cut), metric and
count validation, step-type normalization and definition-time validation. Rejections
are counted and logged (rate limited) by the caller-facing helpers here.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping
from typing import Final

from xray_otel._ratelimit import log
from xray_otel._stats import COUNTERS
from xray_otel.conventions import STEP_TYPES, StepType

_MAX_DEPTH: Final = 32
_MAX_REPR: Final = 1000
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)


def validate_step_type(value: object) -> str:
    """The step type as a plain string; raise on misuse (definition time only)."""
    if isinstance(value, StepType):
        return value.value
    if not isinstance(value, str):
        raise TypeError(
            f"xray step type must be a str or StepType, got {type(value).__name__}"
            " (use @xray.step('filter'), not @xray.step)"
        )
    if value not in STEP_TYPES:
        raise ValueError(f"unknown xray step type {value!r}; expected one of {sorted(STEP_TYPES)}")
    return value


def normalize_step_type(value: object) -> str:
    """The step type as a plain string; unknown values become ``other`` (warned once each)."""
    if isinstance(value, StepType):
        return value.value
    if isinstance(value, str) and value in STEP_TYPES:
        return str(value)
    log.once(
        logging.WARNING,
        ("step-type", safe_repr(value)),
        "xray: unknown step type %s stored as 'other'",
        safe_repr(value),
    )
    return StepType.OTHER.value


def safe_repr(value: object, limit: int = _MAX_REPR) -> str:
    """``repr(value)``, shortened, and never raising."""
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__qualname__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def clean_text(value: object) -> str:
    """A string safe to export: non-strings via ``str``, lone surrogates replaced."""
    if type(value) is str and value.isascii():  # fast path
        return value
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            value = safe_repr(value)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates would make the whole batch fail to encode
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _fallback(obj: object) -> object:
    """``json.dumps`` hook: sets become lists, everything else a readable repr."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return f"<{type(obj).__qualname__}> {safe_repr(obj)}"


def _sanitize(value: object, depth: int) -> object:
    """A JSON-safe copy: finite floats, string keys, bounded depth (cuts cycles)."""
    if depth > _MAX_DEPTH:
        return f"<{type(value).__qualname__}: nested too deep>"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {
            k if isinstance(k, str) else safe_repr(k): _sanitize(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, depth + 1) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    return _fallback(value)


def to_json(value: object) -> str:
    """Serialize ``value`` to a JSON string; never raises, never emits NaN."""
    return clean_text(_dumps(value))


def _dumps(value: object) -> str:
    try:
        return json.dumps(value, default=_fallback, allow_nan=False, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        pass
    except Exception:
        return json.dumps(safe_repr(value))
    try:
        return json.dumps(
            _sanitize(value, 0), default=_fallback, allow_nan=False, ensure_ascii=False
        )
    except Exception:
        return json.dumps(safe_repr(value))


def reject(what: str, value: object, reason: str) -> None:
    """Count and log (rate limited) a value X-Ray refused."""
    COUNTERS.add("rejected_values")
    log.warning(
        ("reject", what, reason), "xray: dropped %s=%s: %s", what, safe_repr(value, 80), reason
    )


def metric_value(name: str, value: object) -> int | float | None:
    """The metric as int or finite float, or ``None`` (rejected) for anything else."""
    if type(value) is float and math.isfinite(value):  # fast path for the common cases
        return value
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        reject(f"metric {name}", value, "metrics must be int or float")
        return None
    if isinstance(value, numbers.Integral) and _INT64_MIN <= int(value) <= _INT64_MAX:
        return int(value)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        reject(f"metric {name}", value, "metrics must be finite")
        return None
    return number


def count_value(what: str, value: object) -> int | None:
    """A non-negative int candidate count, or ``None`` (rejected)."""
    if type(value) is int and 0 <= value <= _INT64_MAX:  # fast path
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not 0 <= int(value) <= _INT64_MAX
    ):
        reject(what, value, "candidate counts must be non-negative 64-bit ints")
        return None
    return int(value)


def artifact_value(name: str, value: object) -> str | bytes | None:
    """str and bytes as they are; other buffers as bytes; anything else as JSON text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if value is None:
        reject(f"artifact {name}", value, "artifacts must be str or bytes")
        return None
    return to_json(value)
