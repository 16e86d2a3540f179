"""Convert JSON values into protobuf scalar field values, the OTLP/JSON way.

The proto3 JSON mapping's readings, as protobuf's own parser applies them, with OTLP's
one change for bytes: trace and span ids are hex. A value that does not fit raises
:class:`Invalid`, which the walker in :mod:`collector_service.ingest.otlp_json` turns
into a ``DecodeError`` naming where the value is.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

HEX_ID_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
"""Bytes fields written in hex in OTLP/JSON; every other bytes field is base64."""
_MIN_INT64 = -(2**63)


class Invalid(Exception):
    """A value that does not fit its field; ``path`` is filled in while the walk unwinds."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.path: list[str] = []


class UnknownName(Exception):
    """An enum name this version does not know: the field is ignored, like an unknown
    field (protobuf's parser does the same when told to ignore unknown fields)."""


def converter(descriptor: FieldDescriptor) -> Callable[[Any], Any]:
    """The conversion for a scalar field: JSON value → the value to assign."""
    if descriptor.type == FieldDescriptor.TYPE_BYTES:
        return _hex_id if descriptor.name in HEX_ID_FIELDS else _base64
    if descriptor.type == FieldDescriptor.TYPE_ENUM:
        return _enum(descriptor.enum_type)
    return _SCALARS[descriptor.type]


def describe(value: Any) -> str:
    """What kind of JSON value ``value`` is, for messages."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is dict:
        return "an object"
    if type(value) is list:
        return "an array"
    return "a string" if type(value) is str else "a number"


def _string(value: Any) -> str:
    if type(value) is not str:
        raise Invalid(f"expected a string, not {describe(value)}")
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise Invalid(f"expected true or false, not {describe(value)}")
    return value


def _integer(value: Any) -> int:
    """An integer from a number or a decimal string (the range is checked on assignment)."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is str:
        if " " not in value:
            try:
                return int(value)
            except ValueError:
                number = _float_or_none(value)
                if number is not None and number.is_integer() and number > _MIN_INT64:
                    return int(number)
        raise Invalid(f"expected an integer, not {value[:40]!r}")
    if kind is float:
        # orjson turns integers beyond 64 bits into floats: refuse those rather than round.
        if value.is_integer() and _MIN_INT64 < value < 2.0**64:
            return int(value)
        raise Invalid(f"expected an integer, not {value!r}")
    raise Invalid(f"expected an integer, not {describe(value)}")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _double(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:  # "NaN", "Infinity", "-Infinity", and decimal text, as protobuf reads
        number = _float_or_none(value) if value != "nan" else None
        if number is not None:
            return number
        raise Invalid(f"expected a number, not {value[:40]!r}")
    raise Invalid(f"expected a number, not {describe(value)}")


def _hex_id(value: Any) -> bytes:
    if type(value) is not str:
        raise Invalid(f"expected a hex string, not {describe(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise Invalid(f"{value[:40]!r} is not a hex string") from None


def _base64(value: Any) -> bytes:
    if type(value) is not str:
        raise Invalid(f"expected a base64 string, not {describe(value)}")
    encoded = value.encode()
    try:
        return base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
    except ValueError:
        raise Invalid(f"{value[:40]!r} is not base64") from None


def _enum(enum_type: EnumDescriptor) -> Callable[[Any], int]:
    by_name: dict[str, int] = {name: value.number
                               for name, value in enum_type.values_by_name.items()}

    def convert(value: Any) -> int:
        kind = type(value)
        if kind is int:
            return value  # type: ignore[no-any-return]
        if kind is str:
            number = by_name.get(value)
            if number is not None:
                return number
            try:
                return int(value)
            except ValueError:
                raise UnknownName(value) from None
        raise Invalid(f"expected a {enum_type.name} number or name, not {describe(value)}")

    return convert


_INTEGER_TYPES = frozenset({
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
})
_SCALARS: dict[int, Callable[[Any], Any]] = {
    **dict.fromkeys(_INTEGER_TYPES, _integer),
    FieldDescriptor.TYPE_DOUBLE: _double, FieldDescriptor.TYPE_FLOAT: _double,
    FieldDescriptor.TYPE_BOOL: _boolean, FieldDescriptor.TYPE_STRING: _string,
}
