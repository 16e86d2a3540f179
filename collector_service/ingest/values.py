"""Turn OTLP ``AnyValue`` messages into plain Python and JSON-safe values.

Postgres ``text`` and ``jsonb`` cannot hold NUL characters (nor lone surrogates, which
UTF-8 cannot encode) and ``jsonb`` cannot hold
NaN or infinities, so those are replaced here and the caller is told, so it can
record what changed.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_DEPTH = 32
"""Nesting deeper than this (in JSON or in OTLP arrays/maps) is not stored as structure."""

NUL_REPLACEMENT = "\ufffd"
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")
_ROUNDED_INTEGER = re.compile(rb"\de\+")


class TooDeep(ValueError):
    """A structured value nests deeper than ``MAX_DEPTH``."""


def from_any_value(value: AnyValue, depth: int = 0) -> Any:
    """The Python value an ``AnyValue`` holds: str, bool, int, float, bytes, list, dict, None."""
    if depth > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [from_any_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: from_any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def clean_text(text: str) -> tuple[str, bool]:
    """``text`` without NUL characters, and whether any were replaced."""
    if "\x00" in text:
        return text.replace("\x00", NUL_REPLACEMENT), True
    return text, False


def _clean_json_string(text: str) -> tuple[str, list[str]]:
    """``text`` fit for ``jsonb``: NUL and lone UTF-16 surrogates (which JSON text can
    spell as ``\\ud800`` escapes, and UTF-8 cannot encode) replaced with U+FFFD."""
    cleaned, changed = clean_text(text)
    notes = ["NUL characters replaced with U+FFFD"] if changed else []
    if not cleaned.isascii() and _LONE_SURROGATES.search(cleaned):
        cleaned = _LONE_SURROGATES.sub(NUL_REPLACEMENT, cleaned)
        notes.append("lone UTF-16 surrogates replaced with U+FFFD")
    return cleaned, notes


def to_json_safe(value: Any, depth: int = 0) -> tuple[Any, list[str]]:
    """A copy of ``value`` that ``jsonb`` accepts, plus a description of each change made.

    bytes become base64 text, NaN and infinities become strings, NUL and lone surrogates
    become U+FFFD.
    """
    if depth > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return _clean_json_string(value)
    if isinstance(value, bool | int) or value is None:
        return value, []
    if isinstance(value, float):
        if math.isfinite(value):
            return value, []
        return str(value), [f"non-finite number {value} stored as a string"]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii"), []
    if isinstance(value, list | tuple):
        items, notes = [], []
        for item in value:
            safe, more = to_json_safe(item, depth + 1)
            items.append(safe)
            notes.extend(more)
        return items, notes
    if isinstance(value, dict):
        mapping, notes = {}, []
        for key, item in value.items():
            safe_key, key_notes = _clean_json_string(str(key))
            safe, more = to_json_safe(item, depth + 1)
            mapping[safe_key] = safe
            notes.extend(more + key_notes)
        return mapping, notes
    return str(value), [f"{type(value).__name__} stored as a string"]


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (scalars are 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def plain_scalar(value: Any) -> bool:
    """Whether ``value`` is stored in ``jsonb`` as it is (what :func:`to_json_safe` would
    return unchanged, with no note), decided without a call per value."""
    kind = type(value)
    if kind is str:
        return value.isascii() and "\x00" not in value
    if kind is float:
        return math.isfinite(value)
    return kind is int or kind is bool or value is None


def parse_json(text: str) -> tuple[Any, str | None]:
    """``json.loads(text)``, and the value's compact encoding when it came for free.

    orjson parses and re-encodes several times faster than the standard library parses
    alone, and gives the very same value except in what it refuses (``NaN``,
    ``Infinity``, lone surrogate escapes, overflowing numbers, deep nesting) and in one
    case it reads differently: an integer past 64 bits becomes a float. Such a float is
    at least 9.2e18 and so is written with an exponent (``9.2e+18``); an encoding with no
    digit before ``e+`` proves no integer was rounded. Every other case takes the
    standard library, with its errors."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text), None
    encoded = orjson.dumps(value)
    if b"e+" in encoded and _ROUNDED_INTEGER.search(encoded):
        return json.loads(text), None
    return value, encoded.decode()  # a str of its own size (see compact_json)


def plain_json(text: str) -> bool:
    """Whether JSON ``text`` that parsed is surely fit for ``jsonb`` as parsed: too few
    brackets to nest past ``MAX_DEPTH``, no NUL or surrogate escape, no ``NaN``/``Infinity``.
    A cheap, conservative test (a ``{`` inside a string counts too) that spares the common
    case the walk over every value; anything else takes that walk."""
    return (
        shallow_without_nul(text)
        and "\\ud" not in text
        and "\\uD" not in text
        and "NaN" not in text
        and "Infinity" not in text
    )


def shallow_without_nul(text: str) -> bool:
    """Too few brackets to nest past ``MAX_DEPTH``, and no NUL escape (``jsonb`` refuses
    NUL): the part of :func:`plain_json` that orjson's parse does not already prove."""
    return text.count("{") + text.count("[") <= MAX_DEPTH and "\\u0000" not in text
