"""Decode an OTLP/JSON trace export request without protobuf's reflection-based JSON parser.

``json_format.ParseDict`` looks up and converts every field through Python-level
descriptor reflection, which made it most of the cost of the OTLP/HTTP JSON path. Here
orjson parses the body, and a walker that knows the OTLP trace schema fills the
protobuf messages in place (``add()`` and attribute assignment, which run in C). The
per-message field tables are built once, at import, from the installed protobuf
descriptors, so every field of the installed OTLP version is understood.

The rules are the OTLP/JSON encoding's (the proto3 JSON mapping with OTLP's changes):

* ``traceId``, ``spanId`` and ``parentSpanId`` are hex strings, any case; other bytes
  fields are base64 (standard or URL-safe alphabet, padding optional);
* 64-bit integers are decimal strings or numbers; an integral float is an integer;
* enums are integers, or (as protobuf's own parser allows) their names;
* doubles are numbers or the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
* keys are lowerCamelCase or the original snake_case names, like protobuf's parser;
* unknown keys are ignored and ``null`` means absent, as for protobuf's parser.

It refuses a little more than ``ParseDict`` does, never less safely: JSON that is not
strict RFC 8259 (``NaN`` literals, lone surrogates, numbers that overflow a double), a
non-object where a message belongs, ``true``/``false`` where a number belongs. Messages
nest at most :data:`MAX_MESSAGE_DEPTH` deep, as protobuf's parsers allow.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector_service.errors import DecodeError

MAX_MESSAGE_DEPTH = 100
"""Nested messages accepted, counting the request itself: protobuf's own parsers (binary
and ``ParseDict``) stop at the same depth, so both encodings of a request decode alike."""

_HEX_ID_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
_MIN_INT64 = -(2**63)


class _Invalid(Exception):
    """A value that does not fit its field; ``path`` is filled in while the walk unwinds."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.path: list[str] = []


def decode_otlp_json(payload: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``, or raise a ``DecodeError`` that
    names the problem and where it is in the document."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from exc
    if type(document) is not dict:
        raise DecodeError("body must be a JSON object with a resourceSpans array")
    request = ExportTraceServiceRequest()
    try:
        _fill(request, document, _TABLES[ExportTraceServiceRequest.DESCRIPTOR.full_name], 1)
    except _Invalid as exc:
        where = "".join(reversed(exc.path)).lstrip(".") or "the document"
        raise DecodeError(f"body is not an OTLP/JSON ExportTraceServiceRequest: "
                          f"at {where}: {exc}") from None
    except RecursionError as exc:  # only if the interpreter's stack is set very low
        raise DecodeError("body is not an OTLP/JSON ExportTraceServiceRequest: "
                          "nested too deeply") from exc
    return request


# --- the walker --------------------------------------------------------------------------

Setter = Callable[[Message, str, Any, Any, int], None]
"""``(message, attribute, json value, argument, depth)``: store one field of ``message``."""


@dataclass(frozen=True)
class _Field:
    """How a message field (or a repeated one) is stored:
    ``setter(message, attr, value, arg, depth)``."""

    attr: str
    setter: Setter
    arg: Any


@dataclass
class _Table:
    """A message type's JSON keys, under both spellings: scalars (key → attribute and
    conversion), other fields, and the oneof each key belongs to, if any."""

    scalars: dict[str, tuple[str, Callable[[Any], Any]]] = field(default_factory=dict)
    fields: dict[str, _Field] = field(default_factory=dict)
    oneofs: dict[str, str] = field(default_factory=dict)
    has_oneof: bool = False


def _fill(message: Message, obj: Any, table: _Table, depth: int) -> None:
    """Store every known key of the JSON object ``obj`` into ``message``."""
    if type(obj) is not dict:
        raise _Invalid(f"expected a JSON object, not {_kind(obj)}")
    if depth > MAX_MESSAGE_DEPTH:
        raise _Invalid(f"messages nested deeper than {MAX_MESSAGE_DEPTH} levels")
    if table.has_oneof:
        _check_one_of(obj, table)
    scalars, others = table.scalars, table.fields
    for key, value in obj.items():
        try:
            scalar = scalars.get(key)
            if scalar is not None:
                if value is not None:
                    setattr(message, scalar[0], scalar[1](value))
                continue
            entry = others.get(key)
            if entry is not None and value is not None:
                entry.setter(message, entry.attr, value, entry.arg, depth)
        except _Invalid as exc:
            exc.path.append(f".{key}")
            raise
        except (ValueError, TypeError) as exc:  # out of range for the field
            invalid = _Invalid(str(exc) or type(exc).__name__)
            invalid.path.append(f".{key}")
            raise invalid from None


def _check_one_of(obj: dict[str, Any], table: _Table) -> None:
    """Refuse two members of one oneof, as protobuf's parser does (``null`` is no member)."""
    chosen: dict[str, str] = {}
    for key, value in obj.items():
        oneof = table.oneofs.get(key)
        if oneof is not None and value is not None:
            if oneof in chosen:
                invalid = _Invalid(f"only one of its {oneof} fields may be set "
                                   f"({chosen[oneof]} is set too)")
                invalid.path.append(f".{key}")
                raise invalid
            chosen[oneof] = key


def _set_message(message: Message, attr: str, value: Any, table: _Table, depth: int) -> None:
    child = getattr(message, attr)
    child.SetInParent()  # present even when empty, as protobuf's parser leaves it
    _fill(child, value, table, depth + 1)


def _add_messages(message: Message, attr: str, value: Any, table: _Table, depth: int) -> None:
    if type(value) is not list:
        raise _Invalid(f"expected a JSON array, not {_kind(value)}")
    add = getattr(message, attr).add
    for index, item in enumerate(value):
        try:
            if item is None:
                raise _Invalid("null is not allowed in an array")
            _fill(add(), item, table, depth + 1)
        except _Invalid as exc:
            exc.path.append(f"[{index}]")
            raise


def _add_key_values(message: Message, attr: str, value: Any, table: _Table,
                    depth: int) -> None:
    """Attributes: most are ``{"key": k, "value": {"<kind>Value": v}}`` with a scalar ``v``.

    Those are stored directly; anything else, or anything the direct way refuses, is
    (re)done by :func:`_fill`, which accepts exactly what it would accept anyway and
    raises the precise error otherwise.
    """
    if type(value) is not list or depth + 2 > MAX_MESSAGE_DEPTH:
        _add_messages(message, attr, value, table, depth)
        return
    items = getattr(message, attr)
    add = items.add
    for index, item in enumerate(value):
        if type(item) is dict and len(item) == 2:
            key, any_value = item.get("key"), item.get("value")
            if type(key) is str and type(any_value) is dict and len(any_value) == 1:
                ((kind, scalar),) = any_value.items()
                direct = _DIRECT_VALUES.get(kind)
                if direct is not None:
                    pair = add()
                    pair.key = key
                    try:
                        setattr(pair.value, direct[0], direct[1](scalar))
                        continue
                    except (_Invalid, ValueError, TypeError):
                        del items[-1]  # refused: the generic walk below says exactly why
        try:
            if item is None:
                raise _Invalid("null is not allowed in an array")
            _fill(add(), item, table, depth + 1)
        except _Invalid as exc:
            exc.path.append(f"[{index}]")
            raise


def _add_scalars(message: Message, attr: str, value: Any,
                 convert: Callable[[Any], Any], depth: int) -> None:
    if type(value) is not list:
        raise _Invalid(f"expected a JSON array, not {_kind(value)}")
    items = getattr(message, attr)
    for index, item in enumerate(value):
        try:
            if item is None:
                raise _Invalid("null is not allowed in an array")
            items.append(convert(item))
        except _Invalid as exc:
            exc.path.append(f"[{index}]")
            raise


# --- scalar conversions ------------------------------------------------------------------


def _kind(value: Any) -> str:
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
        raise _Invalid(f"expected a string, not {_kind(value)}")
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Invalid(f"expected true or false, not {_kind(value)}")
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
        raise _Invalid(f"expected an integer, not {value[:40]!r}")
    if kind is float:
        # orjson turns integers beyond 64 bits into floats: refuse those rather than round.
        if value.is_integer() and _MIN_INT64 < value < 2.0**64:
            return int(value)
        raise _Invalid(f"expected an integer, not {value!r}")
    raise _Invalid(f"expected an integer, not {_kind(value)}")


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
        raise _Invalid(f"expected a number, not {value[:40]!r}")
    raise _Invalid(f"expected a number, not {_kind(value)}")


def _hex_id(value: Any) -> bytes:
    if type(value) is not str:
        raise _Invalid(f"expected a hex string, not {_kind(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _Invalid(f"{value[:40]!r} is not a hex string") from None


def _base64(value: Any) -> bytes:
    if type(value) is not str:
        raise _Invalid(f"expected a base64 string, not {_kind(value)}")
    encoded = value.encode()
    try:
        return base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
    except ValueError:
        raise _Invalid(f"{value[:40]!r} is not base64") from None


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
            if value.lstrip("-").isdigit():
                return int(value)
            raise _Invalid(f"{value[:40]!r} is not a {enum_type.name} value")
        raise _Invalid(f"expected a {enum_type.name} number or name, not {_kind(value)}")

    return convert


# --- tables, built once from the descriptors ---------------------------------------------

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


def _converter(descriptor: FieldDescriptor) -> Callable[[Any], Any]:
    if descriptor.type == FieldDescriptor.TYPE_BYTES:
        return _hex_id if descriptor.name in _HEX_ID_FIELDS else _base64
    if descriptor.type == FieldDescriptor.TYPE_ENUM:
        return _enum(descriptor.enum_type)
    return _SCALARS[descriptor.type]


def _build_tables(root: Descriptor) -> dict[str, _Table]:
    """A table for ``root`` and every message type it reaches (AnyValue is recursive)."""
    descriptors: dict[str, Descriptor] = {}
    pending = [root]
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name not in descriptors:
            descriptors[descriptor.full_name] = descriptor
            pending += [fd.message_type for fd in descriptor.fields if fd.message_type]
    tables = {name: _Table() for name in descriptors}
    for name, table in tables.items():
        for fd in descriptors[name].fields:
            spellings = (fd.json_name, fd.name)
            if fd.message_type is None and not fd.is_repeated:
                table.scalars.update(dict.fromkeys(spellings, (fd.name, _converter(fd))))
            else:
                table.fields.update(dict.fromkeys(spellings, _field_entry(fd, tables)))
            if fd.containing_oneof is not None:
                table.oneofs.update(dict.fromkeys(spellings, fd.containing_oneof.name))
        table.has_oneof = bool(table.oneofs)
    return tables


def _field_entry(fd: FieldDescriptor, tables: dict[str, _Table]) -> _Field:
    if fd.message_type is None:
        return _Field(fd.name, _add_scalars, _converter(fd))
    if fd.message_type.GetOptions().map_entry:
        raise TypeError(f"{fd.full_name}: map fields are not part of OTLP traces")
    table = tables[fd.message_type.full_name]
    if not fd.is_repeated:
        return _Field(fd.name, _set_message, table)
    key_values = fd.message_type.full_name == KeyValue.DESCRIPTOR.full_name
    return _Field(fd.name, _add_key_values if key_values else _add_messages, table)


_TABLES = _build_tables(ExportTraceServiceRequest.DESCRIPTOR)
_DIRECT_VALUES = _TABLES[AnyValue.DESCRIPTOR.full_name].scalars
"""AnyValue's scalar kinds under both spellings: JSON key → (attribute, conversion)."""
