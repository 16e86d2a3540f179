"""Decode an OTLP/JSON trace export request without protobuf's reflection-based JSON parser.

Protobuf's ``json_format.ParseDict`` looks up and converts every field through
Python-level descriptor reflection, several times the cost of mapping a span. Here
orjson parses the body, and a walker that knows the OTLP trace schema fills the
protobuf messages in place (``add()`` and attribute assignment, which run in C). The
per-message field tables are built once, at import, from the installed protobuf
descriptors, so every field of the installed OTLP version is understood.

The rules are the OTLP/JSON encoding's (the proto3 JSON mapping with OTLP's changes):

* ``traceId``, ``spanId`` and ``parentSpanId`` are hex strings, any case; other bytes
  fields are base64 (standard or URL-safe alphabet, padding optional);
* 64-bit integers are decimal strings or numbers; an integral float is an integer;
* enums are integers, or (as protobuf's own parser allows) their names; a name this
  version does not know leaves the field unset, as an unknown field would be;
* doubles are numbers or the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
* keys are lowerCamelCase or the original snake_case names, like protobuf's parser;
* unknown keys are ignored and ``null`` means absent, as for protobuf's parser.

It refuses a little more than ``ParseDict`` does, and nothing it accepts decodes
differently: JSON that is not strict UTF-8 RFC 8259, even in unknown fields (``NaN``
literals, lone surrogates, numbers that overflow a double); a string or array where a
message belongs (``ParseDict`` iterates it as if it were an object's keys); ``true`` or
``false`` where a number belongs; a float as an enum. Messages nest at most
:data:`MAX_MESSAGE_DEPTH` deep, as protobuf's parsers allow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector_service.errors import DecodeError
from collector_service.ingest.json_values import Invalid, UnknownName, converter, describe

MAX_MESSAGE_DEPTH = 100
"""Nested messages accepted, counting the request itself: protobuf's own parsers (binary
and ``ParseDict``) stop at the same depth, so both encodings of a request decode alike."""



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
    except Invalid as exc:
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
        raise Invalid(f"expected a JSON object, not {describe(obj)}")
    if depth > MAX_MESSAGE_DEPTH:
        raise Invalid(f"messages nested deeper than {MAX_MESSAGE_DEPTH} levels")
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
        except UnknownName:
            continue
        except Invalid as exc:
            exc.path.append(f".{key}")
            raise
        except (ValueError, TypeError) as exc:  # out of range for the field
            invalid = Invalid(str(exc) or type(exc).__name__)
            invalid.path.append(f".{key}")
            raise invalid from None


def _check_one_of(obj: dict[str, Any], table: _Table) -> None:
    """Refuse two members of one oneof, as protobuf's parser does (``null`` is no member)."""
    chosen: dict[str, str] = {}
    for key, value in obj.items():
        oneof = table.oneofs.get(key)
        if oneof is not None and value is not None:
            if oneof in chosen:
                invalid = Invalid(f"only one of its {oneof} fields may be set "
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
        raise Invalid(f"expected a JSON array, not {describe(value)}")
    add = getattr(message, attr).add
    for index, item in enumerate(value):
        _fill_item(add, index, item, table, depth)


def _fill_item(add: Callable[[], Message], index: int, item: Any, table: _Table,
               depth: int) -> None:
    """Fill a new element of a repeated message field; errors name the element."""
    try:
        if item is None:
            raise Invalid("null is not allowed in an array")
        _fill(add(), item, table, depth + 1)
    except Invalid as exc:
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
                    except (Invalid, ValueError, TypeError):
                        del items[-1]  # refused: the generic walk below says exactly why
        _fill_item(add, index, item, table, depth)


def _add_scalars(message: Message, attr: str, value: Any,
                 convert: Callable[[Any], Any], depth: int) -> None:
    if type(value) is not list:
        raise Invalid(f"expected a JSON array, not {describe(value)}")
    items = getattr(message, attr)
    for index, item in enumerate(value):
        try:
            if item is None:
                raise Invalid("null is not allowed in an array")
            items.append(convert(item))
        except UnknownName:
            continue
        except Invalid as exc:
            exc.path.append(f"[{index}]")
            raise


# --- tables, built once from the descriptors ---------------------------------------------

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
                table.scalars.update(dict.fromkeys(spellings, (fd.name, converter(fd))))
            else:
                table.fields.update(dict.fromkeys(spellings, _field_entry(fd, tables)))
            if fd.containing_oneof is not None:
                table.oneofs.update(dict.fromkeys(spellings, fd.containing_oneof.name))
        table.has_oneof = bool(table.oneofs)
    return tables


def _field_entry(fd: FieldDescriptor, tables: dict[str, _Table]) -> _Field:
    if fd.message_type is None:
        return _Field(fd.name, _add_scalars, converter(fd))
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
