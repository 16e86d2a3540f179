"""Read the attributes of a plain step span in one walk, for the mapping's fast route.

Nearly every step span carries only what the contract asks, in the right types: a known
step type, short labels, small integers, JSON that needs no repair, finite metrics and
extra attributes already fit for ``jsonb``. For such a span the general readers
(:class:`~collector_service.ingest.attributes.SpanAttributes`) note nothing and change
nothing, so reading the values once, checking them as those readers would, is enough.
Anything those readers would note, convert or reject makes this return ``None``, and the
span takes the general route: the fast route never decides what a value becomes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from collector_service.ingest.attributes import (
    COUNT_RANGE,
    MAX_LABEL_CHARS,
    MAX_RUN_ID_LENGTH,
    SEQ_RANGE,
    parse_plain_json,
    plain_int,
    plain_text,
)
from collector_service.ingest.values import plain_scalar
from collector_service.store.rows import JsonCache
from xray_otel import conventions as c

_LABELS = {c.STEP_NAME: MAX_LABEL_CHARS, c.RUN_PIPELINE: MAX_LABEL_CHARS,
           c.RUN_ENTITY: MAX_LABEL_CHARS, c.STEP_WHY: None, c.RUN_ID: MAX_RUN_ID_LENGTH}
"""Text columns and their longest plain length (``None``: no limit)."""
_INTEGERS = {c.STEP_SEQ: SEQ_RANGE, c.STEP_CANDIDATES_IN: COUNT_RANGE,
             c.STEP_CANDIDATES_OUT: COUNT_RANGE}
_JSON = (c.STEP_WHY_JSON, c.STEP_INPUT, c.STEP_OUTPUT)
_CONTRACT = frozenset({c.STEP_TYPE, *_LABELS, *_INTEGERS, *_JSON})
"""The attributes a step row's columns take; every other one stays in ``attributes``."""
_METRIC = c.STEP_METRIC_PREFIX
_METRIC_LENGTH = len(c.STEP_METRIC_PREFIX)
_SCALARS = frozenset({"bool_value", "int_value", "double_value"})
"""Scalar kinds besides strings (the usual value, read without ``getattr``)."""


class PlainStep(NamedTuple):
    """The attribute values of a plain step span, as the general readers would give them."""

    columns: dict[str, Any]
    """Contract attribute → column value (JSON parsed); an absent attribute is absent."""
    metrics: dict[str, float | int]
    remaining: dict[str, Any]
    encoded: JsonCache


def read_plain_step(key_values: Sequence[KeyValue]) -> PlainStep | None:
    """The span's attributes when every one is plain (see the module), else ``None``."""
    columns: dict[str, Any] = {}
    metrics: dict[str, float | int] = {}
    remaining: dict[str, Any] = {}
    for kv in key_values:
        key, any_value = kv.key, kv.value
        # The usual kinds, read without asking which one is set: a member of the oneof
        # that is not set reads as its default, so a non-default value is the one sent.
        value: Any = any_value.string_value or any_value.int_value
        if not value:  # a string or integer of its own default, or another kind
            kind = any_value.WhichOneof("value")
            if kind in _SCALARS:
                value = getattr(any_value, kind)
            elif kind is None:
                value = None
            elif kind == "string_value":
                value = ""  # not the integer 0 read above
            else:
                return None  # bytes, arrays and maps: the general readers' business
        if key in _CONTRACT:
            columns[key] = value
        elif key.startswith(_METRIC):
            kind_of = type(value)
            if not (len(key) > _METRIC_LENGTH
                    and (kind_of is int or (kind_of is float and math.isfinite(value)))):
                return None
            metrics[key[_METRIC_LENGTH:]] = value
        elif key.startswith(c.ARTIFACT_PREFIX) or "\x00" in key or not plain_scalar(value):
            return None
        else:
            remaining[key] = value
    if len(key_values) != len(columns) + len(metrics) + len(remaining):
        return None  # a repeated key: the general readers keep the first one's place
    if columns.get(c.STEP_TYPE) not in c.STEP_TYPES:
        return None
    for key, limit in _LABELS.items():
        if not plain_text(columns.get(key), limit):
            return None
    run_id = columns.get(c.RUN_ID)
    if run_id is not None and not run_id:
        return None  # an empty run id is noted, and the trace id used
    for key, (low, high) in _INTEGERS.items():
        if not plain_int(columns.get(key), low, high):
            return None
    encoded = JsonCache()
    for key in _JSON:
        text = columns.get(key)
        if text is None:
            continue
        if type(text) is not str or "\x00" in text:
            return None
        try:
            value, plain = parse_plain_json(text, encoded)
        except (ValueError, RecursionError):
            return None  # not JSON: a note, or for ``why_json`` no column
        if not plain or (key == c.STEP_WHY_JSON and not isinstance(value, dict)):
            return None
        columns[key] = value
    return PlainStep(columns, metrics, remaining, encoded)

