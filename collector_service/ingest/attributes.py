"""Read the X-Ray contract attributes of one span, keeping all that can be kept.

Each reader takes the raw attribute values and returns the column value. A value that
does not fit its column is coerced where that loses nothing (``5.0`` → ``5``) or else
left out of the column; either way an :class:`Adjustment` says what happened and the
original value is kept in the row's ``attributes`` so nothing a producer sent is lost.
"""

from __future__ import annotations

import math
import re
from typing import Any

from collector_service.ingest.values import (
    MAX_DEPTH,
    clean_text,
    json_depth,
    parse_json,
    plain_json,
    plain_scalar,
    shallow_without_nul,
    to_json_safe,
)
from collector_service.store.rows import Adjustment, JsonCache
from xray_otel import conventions as c

MAX_RUN_ID_LENGTH = 256
MAX_LABEL_CHARS = 512
_INT_TEXT = re.compile(r"^[+-]?\d{1,18}$")
_INT64_LIMIT = 2**63
_INT32_MAX = 2**31 - 1
_SIMPLE_COLUMNS = (c.STEP_SEQ, c.RUN_PIPELINE, c.RUN_ENTITY, c.STEP_CANDIDATES_IN,
                   c.STEP_CANDIDATES_OUT, c.STEP_WHY)
SEQ_RANGE = (1, _INT32_MAX)
COUNT_RANGE = (0, _INT64_LIMIT - 1)
"""What ``xray.step.seq`` and the candidate counts may hold, both ends included."""
PREFIXES = (c.STEP_METRIC_PREFIX, c.ARTIFACT_PREFIX)
"""Metric and artifact attributes: their names are listed apart as they are read."""


class SpanAttributes:
    """The attributes of one span: reads contract values and collects adjustments."""

    def __init__(self, values: dict[str, Any], prefixed: list[str] | None = None) -> None:
        self._values = values
        self._prefixed = (prefixed if prefixed is not None
                          else [name for name in values if name.startswith(PREFIXES)])
        """Names of metric and artifact attributes, in ``values``' order: found once (by
        the caller as it read the values, or here), not once per reader."""
        self._consumed: set[str] = set()
        self.adjustments: list[Adjustment] = []
        self.encoded = JsonCache()
        """JSON values encoded while reading them; the row built from these attributes
        takes this cache over, so they are not encoded again."""

    def has(self, name: str) -> bool:
        return name in self._values

    @property
    def any_prefixed(self) -> bool:
        """Whether any metric or artifact attribute is present."""
        return bool(self._prefixed)

    def _take(self, name: str) -> Any:
        self._consumed.add(name)
        return self._values.get(name)

    def reject(self, name: str, problem: str) -> None:
        """Note the problem and give the raw value back to ``attributes``."""
        self._consumed.discard(name)
        self.adjustments.append(Adjustment(name, problem))

    def _note(self, name: str, problem: str) -> None:
        self.adjustments.append(Adjustment(name, problem))

    def text(self, name: str) -> str | None:
        """A string attribute; bytes are decoded as UTF-8, scalars are converted."""
        self._consumed.add(name)
        value = self._values.get(name)
        if type(value) is str and "\x00" not in value:
            return value  # nearly every value, spared the checks below
        if value is None:
            return None
        if isinstance(value, list | dict):
            self.reject(name, f"expected a string, got {_kind(value)}")
            return None
        if not isinstance(value, str | bytes):
            self._note(name, f"expected a string, got {_kind(value)}; converted")
            value = str(value)
        return self._as_text(name, value)

    def label(self, name: str) -> str | None:
        """A short indexed string (step name, pipeline, entity), cut at ``MAX_LABEL_CHARS``."""
        text = self.text(name)
        if text is not None and len(text) > MAX_LABEL_CHARS:
            self._note(name, f"longer than {MAX_LABEL_CHARS} characters; truncated")
            return text[:MAX_LABEL_CHARS]
        return text

    def _as_text(self, name: str, value: str | bytes) -> str:
        if isinstance(value, bytes):
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                text = value.decode("utf-8", errors="replace")
                self._note(name, "invalid UTF-8 replaced with U+FFFD")
        else:
            text = value
        cleaned, changed = clean_text(text)
        if changed:
            self._note(name, "NUL characters replaced with U+FFFD")
        return cleaned

    def count(self, name: str) -> int | None:
        """A non-negative integer (candidates in/out)."""
        value = self._integer(name)
        if value is not None and value < 0:
            self.reject(name, f"must not be negative, got {value}")
            return None
        return value

    def seq(self) -> int | None:
        value = self._integer(c.STEP_SEQ)
        if value is not None and not 1 <= value <= 2**31 - 1:
            self.reject(c.STEP_SEQ, f"must be between 1 and 2147483647, got {value}")
            return None
        return value

    def _integer(self, name: str) -> int | None:
        self._consumed.add(name)
        value = self._values.get(name)
        if type(value) is int and -_INT64_LIMIT < value < _INT64_LIMIT:
            return value  # nearly every value, spared the checks below
        if value is None:
            return None
        if isinstance(value, bool):
            self.reject(name, "expected an integer, got a boolean")
            return None
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # JavaScript producers send whole numbers as doubles
        if isinstance(value, int):
            if abs(value) >= _INT64_LIMIT:
                self.reject(name, "integer out of range")
                return None
            return value
        if isinstance(value, str) and _INT_TEXT.match(value.strip()):
            self._note(name, f"expected an integer, got the string {value!r}; converted")
            return int(value.strip())
        self.reject(name, f"expected an integer, got {_kind(value)} {_preview(value)}")
        return None

    def json_object(self, name: str) -> dict[str, Any] | None:
        """``why_json``: a string holding a JSON object (a native OTLP map is accepted too)."""
        value = self._take(name)
        plain = False
        if isinstance(value, str | bytes):
            text = self._as_text(name, value)
            try:
                value, plain = self._parse(text)
            except RecursionError:
                self.reject(name, f"JSON nested deeper than {MAX_DEPTH} levels")
                return None
            except ValueError:
                self.reject(name, "not valid JSON")
                return None
        if value is None:
            return None
        if not isinstance(value, dict):
            self.reject(name, f"expected a JSON object, got {_kind(value)}")
            return None
        if plain:
            return value
        structured: dict[str, Any] | None = self._structured(name, value)
        return structured

    def json_value(self, name: str) -> Any:
        """``input``/``output``: a string holding JSON; plain text is kept as a JSON string."""
        value = self._take(name)
        if isinstance(value, str | bytes):
            text = self._as_text(name, value)
            try:
                value, plain = self._parse(text)
            except RecursionError:
                return self._rejected(name, f"JSON nested deeper than {MAX_DEPTH} levels")
            except ValueError:
                self._note(name, "not JSON; stored as a JSON string")
                return text
            if plain:
                return value
        return None if value is None else self._structured(name, value)

    def _parse(self, text: str) -> tuple[Any, bool]:
        return parse_plain_json(text, self.encoded)

    def _structured(self, name: str, value: Any) -> Any:
        if json_depth(value) > MAX_DEPTH:
            return self._rejected(name, f"JSON nested deeper than {MAX_DEPTH} levels")
        safe, notes = to_json_safe(value)
        for note in sorted(set(notes)):
            self._note(name, note)
        return safe

    def _rejected(self, name: str, problem: str) -> Any:
        """Reject the value and return ``None`` as the column value."""
        self.reject(name, problem)
        return None

    def metrics(self) -> dict[str, float | int]:
        """Every ``xray.step.metric.<name>`` that holds a finite number."""
        found: dict[str, float | int] = {}
        for name in self._prefixed:
            if not name.startswith(c.STEP_METRIC_PREFIX):
                continue
            value = self._take(name)
            metric = name.removeprefix(c.STEP_METRIC_PREFIX)
            kind = type(value)
            if metric and (kind is int or (kind is float and math.isfinite(value))):
                found[metric] = value  # nearly every metric, spared the checks below
            elif isinstance(value, bool) or not isinstance(value, int | float):
                self.reject(name, f"metric must be a number, got {_kind(value)}")
            elif isinstance(value, float) and not math.isfinite(value):
                self.reject(name, f"metric must be finite, got {value}")
            elif not metric:
                self.reject(name, "metric has an empty name")
            else:
                found[metric] = value
        return found

    def prefixed(self, prefix: str) -> dict[str, Any]:
        """Take every attribute whose name starts with ``prefix``."""
        return {name: self._take(name) for name in self._prefixed if name.startswith(prefix)}

    def step_columns(self) -> dict[str, Any]:
        """The columns of a step row that come straight from contract attributes,
        whichever wire format carried them (OTLP spans or X-Ray events)."""
        simple = self._simple_columns()
        if simple is not None:
            simple["why_json"] = self.json_object(c.STEP_WHY_JSON)
            simple["input"] = self.json_value(c.STEP_INPUT)
            simple["output"] = self.json_value(c.STEP_OUTPUT)
            simple["metrics"] = self.metrics()
            return simple
        return {
            "seq": self.seq(),
            "pipeline": self.label(c.RUN_PIPELINE),
            "entity": self.label(c.RUN_ENTITY),
            "candidates_in": self.count(c.STEP_CANDIDATES_IN),
            "candidates_out": self.count(c.STEP_CANDIDATES_OUT),
            "why": self.text(c.STEP_WHY),
            "why_json": self.json_object(c.STEP_WHY_JSON),
            "input": self.json_value(c.STEP_INPUT),
            "output": self.json_value(c.STEP_OUTPUT),
            "metrics": self.metrics(),
        }

    def _simple_columns(self) -> dict[str, Any] | None:
        """The scalar step columns when every one holds what the readers would take as
        it is (the usual span), read straight from the values; else ``None``, and the
        readers take over, with their notes."""
        get = self._values.get
        seq, count_in, count_out = get(c.STEP_SEQ), get(c.STEP_CANDIDATES_IN), \
            get(c.STEP_CANDIDATES_OUT)
        pipeline, entity, why = get(c.RUN_PIPELINE), get(c.RUN_ENTITY), get(c.STEP_WHY)
        if not (plain_int(seq, *SEQ_RANGE) and plain_int(count_in, *COUNT_RANGE)
                and plain_int(count_out, *COUNT_RANGE)
                and plain_text(pipeline, MAX_LABEL_CHARS) and plain_text(entity, MAX_LABEL_CHARS)
                and plain_text(why, None)):
            return None
        self._consumed.update(_SIMPLE_COLUMNS)
        return {"seq": seq, "pipeline": pipeline, "entity": entity, "candidates_in": count_in,
                "candidates_out": count_out, "why": why}

    def remaining(self) -> dict[str, Any]:
        """Every attribute not mapped to a column, made JSON-safe for ``attributes``."""
        rest: dict[str, Any] = {}
        already_noted: set[str] | None = None
        for name, value in self._values.items():
            if name in self._consumed:
                continue
            if "\x00" not in name and plain_scalar(value):
                rest[name] = value  # already JSON-safe: the usual extra attribute
                continue
            try:
                safe, notes = to_json_safe(value)
            except RecursionError:
                safe, notes = _preview(value), ["nested too deeply; stored as a preview"]
            rest[clean_text(name)[0]] = safe
            if notes:
                if already_noted is None:
                    already_noted = {a.attribute for a in self.adjustments}
                if name not in already_noted:
                    for note in sorted(set(notes)):
                        self._note(name, note)
        return rest


def parse_plain_json(text: str, encoded: JsonCache) -> tuple[Any, bool]:
    """JSON ``text`` parsed as ``json.loads`` parses it, and whether the value is plain
    (fit for ``jsonb`` as parsed: see :func:`plain_json`). A plain value's encoding, when
    parsing produced it, is kept in ``encoded`` for the row."""
    value, text_of_value = parse_json(text)
    if text_of_value is None:
        return value, plain_json(text)
    # orjson refused NaN, Infinity and lone surrogates: depth and NUL remain to check
    plain = shallow_without_nul(text)
    if plain:
        encoded.put(value, text_of_value)
    return value, plain


def plain_int(value: Any, low: int, high: int) -> bool:
    """Absent, or an integer (not a boolean) from ``low`` to ``high``."""
    return value is None or (type(value) is int and low <= value <= high)


def plain_text(value: Any, limit: int | None) -> bool:
    """Absent, or a string with no NUL, of at most ``limit`` characters."""
    return value is None or (type(value) is str and "\x00" not in value
                             and (limit is None or len(value) <= limit))


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
             bytes: "bytes", list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _preview(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
