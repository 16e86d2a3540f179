"""The OTLP/JSON decoder against protobuf's own JSON parser, used here as the oracle.

Every generated request, written as OTLP/JSON in each spelling the encoding allows
(camelCase or snake_case keys, enum names or numbers, 64-bit integers as strings or
numbers, upper- or lower-case hex ids), decodes to the request itself; on arbitrary
OTLP-shaped documents the decoder never accepts what ``ParseDict`` refuses and never
decodes a document differently from it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_service.errors import DecodeError
from collector_service.ingest.decode import decode_json, decode_protobuf
from collector_service.ingest.otlp_json import MAX_MESSAGE_DEPTH
from tests.otlp_strategies import FOUND_BY_FUZZING, ci_settings, requests

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
HEX_IDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
INT64_KEYS = {"intValue", "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano",
              "int_value", "start_time_unix_nano", "end_time_unix_nano", "time_unix_nano"}


def _walk(node: Any, visit: Any) -> Any:
    """A copy of the JSON ``node`` with ``visit(key, value)`` applied to every object item."""
    if isinstance(node, dict):
        return {key: visit(key, _walk(value, visit)) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(item, visit) for item in node]
    return node


def otlp_document(request: ExportTraceServiceRequest, *, snake_case: bool = False,
                  enum_numbers: bool = False, upper_hex: bool = False,
                  int64_numbers: bool = False) -> dict[str, Any]:
    """``request`` as OTLP/JSON: protobuf's JSON mapping with hex ids, in one spelling."""
    document = json_format.MessageToDict(request, preserving_proto_field_name=snake_case,
                                         use_integers_for_enums=enum_numbers)

    def respell(key: str, value: Any) -> Any:
        if key in HEX_IDS and isinstance(value, str):
            text = base64.b64decode(value).hex()
            return text.upper() if upper_hex else text
        if int64_numbers and key in INT64_KEYS and isinstance(value, str):
            return int(value)
        return value

    return _walk(document, respell)  # type: ignore[no-any-return]


def comparable(request: ExportTraceServiceRequest) -> str:
    """Comparable form: ``==`` on messages holding NaN doubles is never true, and JSON keeps
    no NaN's sign or payload; every other value (-0.0 too) is told apart."""
    return json.dumps(json_format.MessageToDict(request), sort_keys=True)


def parse_dict_oracle(body: bytes) -> ExportTraceServiceRequest:
    """What protobuf's own parser makes of an OTLP/JSON body (hex ids made base64 first)."""
    document = json.loads(body)
    if not isinstance(document, dict):
        raise DecodeError("not an object")

    def base64_ids(key: str, value: Any) -> Any:
        if key in HEX_IDS and isinstance(value, str):
            try:
                return base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                return 0  # refused where an id belongs, ignored where the key is unknown
        return value

    request = ExportTraceServiceRequest()
    json_format.ParseDict(_walk(document, base64_ids), request, ignore_unknown_fields=True)
    return request


# --- every spelling of a generated request decodes to the request ------------------------


@ci_settings(150)
@given(requests(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
@example(FOUND_BY_FUZZING[2], False, False, False, False)
def test_every_spelling_of_a_request_decodes_to_the_request(
        request: ExportTraceServiceRequest, snake_case: bool, enum_numbers: bool,
        upper_hex: bool, int64_numbers: bool) -> None:
    document = otlp_document(request, snake_case=snake_case, enum_numbers=enum_numbers,
                             upper_hex=upper_hex, int64_numbers=int64_numbers)
    decoded = decode_json(json.dumps(document).encode())
    assert comparable(decoded) == comparable(request)
    assert comparable(decoded) == comparable(parse_dict_oracle(json.dumps(document).encode()))


# --- never more lenient than protobuf's parser, never different --------------------------

KEYS = st.sampled_from([
    "resourceSpans", "resource_spans", "resource", "scopeSpans", "scope_spans", "scope",
    "spans", "traceId", "trace_id", "spanId", "parentSpanId", "name", "kind", "flags",
    "attributes", "key", "value", "stringValue", "string_value", "intValue", "int_value",
    "doubleValue", "boolValue", "bytesValue", "arrayValue", "kvlistValue", "kvlist_value",
    "values", "startTimeUnixNano", "endTimeUnixNano", "status", "code", "message", "events",
    "timeUnixNano", "links", "droppedAttributesCount", "schemaUrl", "traceState", "future",
])
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.sampled_from(["", "0102", "ABCDEF0123456789", "zz", "AAAA", "AQ", "-_8", "-1", "7",
                     "1e3", "1.5", " 3", "NaN", "nan", "Infinity", "-Infinity", "2",
                     "SPAN_KIND_SERVER", "STATUS_CODE_ERROR", "18446744073709551615",
                     "18446744073709551616", "-9223372036854775809"]),
)
DOCUMENTS = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=25)
SHAPED = st.fixed_dictionaries({"resourceSpans": st.lists(st.fixed_dictionaries(
    {"scopeSpans": st.lists(st.fixed_dictionaries({"spans": st.lists(
        st.dictionaries(KEYS, DOCUMENTS, max_size=5), max_size=2)}), max_size=2)},
    optional={"resource": DOCUMENTS}), max_size=2)})


def _stricter_by_design(node: Any, descriptor: Descriptor) -> bool:
    """Whether ``node`` holds what the decoder refuses on purpose and ``ParseDict`` takes:
    a string or array where a message belongs (``ParseDict`` iterates it as if it were
    an object's keys), ``true``/``false`` where a number belongs, a float as an enum."""
    if not isinstance(node, dict):
        return True
    for key, value in node.items():
        fd = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if fd is None or value is None:
            continue
        for item in value if fd.is_repeated and isinstance(value, list) else [value]:
            if fd.message_type is not None:
                refused = item is not None and _stricter_by_design(item, fd.message_type)
            else:
                refused = ((isinstance(item, bool) and fd.type != FieldDescriptor.TYPE_BOOL)
                           or (isinstance(item, float) and fd.type == FieldDescriptor.TYPE_ENUM))
            if refused:
                return True
    return False


@ci_settings(400)
@given(SHAPED | DOCUMENTS)
@example({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SPAN_KIND_SERVER"}]}]}]})
@example({"resourceSpans": [{"resource": {"attributes": [{"value": {"intValue": 1.0}}]}}]})
def test_decoder_agrees_with_protobufs_parser(document: Any) -> None:
    body = json.dumps(document).encode()
    try:
        expected: ExportTraceServiceRequest | None = parse_dict_oracle(body)
    except (json_format.ParseError, DecodeError, ValueError, TypeError, RecursionError):
        expected = None
    try:
        decoded: ExportTraceServiceRequest | None = decode_json(body)
    except DecodeError as exc:
        assert str(exc)
        decoded = None
    if decoded is not None:
        assert expected is not None, "accepted what protobuf's parser refuses"
        assert comparable(decoded) == comparable(expected)
    elif expected is not None:
        assert _stricter_by_design(document, ExportTraceServiceRequest.DESCRIPTOR), document


# --- the encoding's rules, one by one ----------------------------------------------------

TRACE_HEX = "5B8EFFF798038103D269B633813FC60C"


def spec_example(**span: Any) -> dict[str, Any]:
    """Shaped like opentelemetry-proto's examples/trace.json (numbers for the times,
    upper-case hex ids), with ``span``'s keys added to or replacing its one span's."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{
            "scope": {"name": "my.library", "version": "1.0.0", "attributes": [
                {"key": "my.scope.attribute", "value": {"stringValue": "some scope"}}]},
            "spans": [{
                "traceId": TRACE_HEX, "spanId": "EEE19B7EC3C1B174",
                "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
                "startTimeUnixNano": 1544712660000000000,
                "endTimeUnixNano": 1544712661000000000, "kind": 2,
                "attributes": [{"key": "my.span.attr", "value": {"stringValue": "v"}}],
                **span,
            }],
        }],
    }]}


def first_span(document: dict[str, Any]) -> Any:
    return decode_json(json.dumps(document).encode()).resource_spans[0].scope_spans[0].spans[0]


def attribute(value: dict[str, Any]) -> Any:
    return first_span(spec_example(attributes=[{"key": "k", "value": value}])).attributes[0].value


def test_the_specifications_example() -> None:
    request = decode_json(json.dumps(spec_example()).encode())
    assert comparable(request) == comparable(parse_dict_oracle(json.dumps(spec_example()).encode()))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == TRACE_HEX.lower()
    assert span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert (span.kind, span.start_time_unix_nano) == (2, 1544712660000000000)
    assert request.resource_spans[0].scope_spans[0].scope.attributes[0].key == "my.scope.attribute"


@pytest.mark.parametrize("spelling", ["1544712660000000000", 1544712660000000000,
                                      1.54471266e18, "1.54471266e18", "18446744073709551615"])
def test_64_bit_integers_as_strings_or_numbers(spelling: Any) -> None:
    expected = 2**64 - 1 if spelling == "18446744073709551615" else 1544712660000000000
    assert first_span(spec_example(startTimeUnixNano=spelling)).start_time_unix_nano == expected
    assert attribute({"intValue": "-9223372036854775808"}).int_value == -(2**63)
    assert attribute({"intValue": 9223372036854775807}).int_value == 2**63 - 1


@pytest.mark.parametrize("kind, status", [(2, 2), ("SPAN_KIND_SERVER", "STATUS_CODE_ERROR"),
                                          ("2", "2")])
def test_enums_as_numbers_or_names(kind: Any, status: Any) -> None:
    span = first_span(spec_example(kind=kind, status={"code": status, "message": "m"}))
    assert (span.kind, span.status.code, span.status.message) == (2, 2, "m")


def test_unknown_enum_numbers_are_kept_and_unknown_names_ignored() -> None:
    assert first_span(spec_example(kind=9)).kind == 9
    span = first_span(spec_example(kind="SPAN_KIND_FUTURE", status={"code": "STATUS_CODE_X"}))
    assert (span.kind, span.HasField("status"), span.status.code) == (0, True, 0)


def test_snake_case_names_are_accepted_like_protobufs_parser_does() -> None:
    span = first_span(spec_example(trace_id="0102030405060708090a0b0c0d0e0f10",
                                   start_time_unix_nano="5", dropped_attributes_count=3))
    assert (span.trace_id, span.start_time_unix_nano) == (bytes(range(1, 17)), 5)
    assert span.dropped_attributes_count == 3


def test_unknown_fields_are_ignored_at_every_level() -> None:
    document = spec_example(futureField={"nested": [1, {"x": None}]},
                            attributes=[{"key": "k", "value": {"stringValue": "v",
                                                               "futureValue": 1}, "x": 2}])
    document["futureTop"] = "ignored"
    document["resourceSpans"][0]["futureResourceField"] = [1, 2]
    span = first_span(document)
    assert span.attributes[0].value.string_value == "v"


def test_absent_empty_and_null_fields_are_defaults() -> None:
    span = first_span({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "", "name": None, "attributes": [], "status": {}}]}]}]})
    assert (span.trace_id, span.name, len(span.attributes)) == (b"", "", 0)
    assert span.HasField("status") and not span.status.code
    assert not decode_json(b"{}").resource_spans


def test_bytes_values_are_base64_and_ids_are_hex() -> None:
    assert attribute({"bytesValue": "AAEC/w=="}).bytes_value == b"\x00\x01\x02\xff"
    assert attribute({"bytesValue": "AAEC_w"}).bytes_value == b"\x00\x01\x02\xff"
    link = first_span(spec_example(links=[{"traceId": TRACE_HEX.lower(), "spanId": "01" * 8,
                                           "flags": 256}])).links[0]
    assert (link.trace_id.hex(), link.span_id, link.flags) == (TRACE_HEX.lower(), b"\1" * 8, 256)


def test_doubles_as_numbers_or_the_special_strings() -> None:
    assert attribute({"doubleValue": 0.5}).double_value == 0.5
    assert attribute({"doubleValue": 3}).double_value == 3.0
    assert attribute({"doubleValue": "Infinity"}).double_value == float("inf")
    assert attribute({"doubleValue": "-Infinity"}).double_value == float("-inf")
    assert attribute({"doubleValue": "NaN"}).double_value != attribute(
        {"doubleValue": "NaN"}).double_value  # NaN


def test_nested_values_and_events() -> None:
    value = attribute({"kvlistValue": {"values": [
        {"key": "a", "value": {"arrayValue": {"values": [{"boolValue": True}, {}]}}}]}})
    inner = value.kvlist_value.values[0].value.array_value.values
    assert inner[0].bool_value is True and not inner[1].WhichOneof("value")
    span = first_span(spec_example(events=[{"timeUnixNano": "7", "name": "exception",
                                            "attributes": [{"key": "exception.message",
                                                            "value": {"stringValue": "x"}}]}]))
    assert (span.events[0].time_unix_nano, span.events[0].attributes[0].value.string_value) == (
        7, "x")


# --- bad input: a DecodeError that says what and where -----------------------------------

SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


@pytest.mark.parametrize("span, message", [
    ({"traceId": "zz"}, f"{SPAN_PATH}.traceId: 'zz' is not a hex string"),
    ({"traceId": 12}, f"{SPAN_PATH}.traceId: expected a hex string, not a number"),
    ({"name": 5}, f"{SPAN_PATH}.name: expected a string"),
    ({"kind": 2**40}, f"{SPAN_PATH}.kind"),
    ({"startTimeUnixNano": "-1"}, f"{SPAN_PATH}.startTimeUnixNano"),
    ({"startTimeUnixNano": "1.5"}, f"{SPAN_PATH}.startTimeUnixNano: expected an integer"),
    ({"startTimeUnixNano": " 1"}, f"{SPAN_PATH}.startTimeUnixNano: expected an integer"),
    ({"startTimeUnixNano": 18446744073709551616}, f"{SPAN_PATH}.startTimeUnixNano"),
    ({"startTimeUnixNano": True}, "expected an integer, not a boolean"),
    ({"startTimeUnixNano": 1.5}, f"{SPAN_PATH}.startTimeUnixNano: expected an integer, not 1.5"),
    ({"attributes": [{"key": "k", "value": {"intValue": -9223372036854775809}}]},
     "value.intValue: expected an integer"),  # beyond 64 bits: refused, not rounded
    ({"attributes": {"key": "k"}}, f"{SPAN_PATH}.attributes: expected a JSON array"),
    ({"attributes": [None]}, f"{SPAN_PATH}.attributes[0]: null is not allowed"),
    ({"attributes": [{"key": "k", "value": {"intValue": "x"}}]},
     f"{SPAN_PATH}.attributes[0].value.intValue: expected an integer, not 'x'"),
    ({"attributes": [{"key": "k", "value": {"intValue": 1, "stringValue": "s"}}]},
     f"{SPAN_PATH}.attributes[0].value.stringValue: only one of its value fields"),
    ({"attributes": [{"key": "k", "value": {"doubleValue": "nan"}}]}, "'nan'"),
    ({"attributes": [{"key": "k", "value": {"bytesValue": "A"}}]}, "'A' is not base64"),
    ({"attributes": [{"key": "k", "value": {"boolValue": "true"}}]}, "expected true or false"),
    ({"status": "ERROR"}, f"{SPAN_PATH}.status: expected a JSON object, not a string"),
    ({"events": [{"timeUnixNano": []}]}, f"{SPAN_PATH}.events[0].timeUnixNano"),
])
def test_bad_fields_are_refused_with_their_path(span: dict[str, Any], message: str) -> None:
    with pytest.raises(DecodeError, match="ExportTraceServiceRequest") as refused:
        first_span(spec_example(**span))
    assert message in str(refused.value)


@pytest.mark.parametrize("body, message", [
    (b"", "not valid JSON"), (b"{", "not valid JSON"), (b'{"a": NaN}', "not valid JSON"),
    (b'{"a": "\\ud800"}', "not valid JSON"), (b"\xff", "not valid JSON"),
    (b"[" * 5000, "not valid JSON"), (b'"text"', "JSON object"),
    (b'{"resourceSpans": {}}', "at resourceSpans: expected a JSON array"),
    (b'{"resourceSpans": [[]]}', "at resourceSpans[0]: expected a JSON object, not an array"),
])
def test_bad_documents_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_json(body)
    assert message in str(refused.value)


def _nested_document(levels: int) -> bytes:
    """A request whose messages nest ``levels`` deep (request, resource spans, scope spans,
    span, key-value, then AnyValue / ArrayValue pairs)."""
    value: dict[str, Any] = {"stringValue": "leaf"}
    depth = 6  # request → ... → the attribute's AnyValue
    if (levels - depth) % 2:  # a key-value list adds three levels, an array two
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        depth += 3
    while depth < levels:
        value, depth = {"arrayValue": {"values": [value]}}, depth + 2
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "k", "value": value}]}]}]}]}).encode()


@pytest.mark.parametrize("levels", [MAX_MESSAGE_DEPTH - 1, MAX_MESSAGE_DEPTH,
                                    MAX_MESSAGE_DEPTH + 1, MAX_MESSAGE_DEPTH + 2, 400])
def test_nesting_is_bounded_exactly_where_protobufs_parser_bounds_it(levels: int) -> None:
    body = _nested_document(levels)
    try:
        parse_dict_oracle(body)
        accepted = True
    except (json_format.ParseError, RecursionError):
        accepted = False
    assert accepted == (levels <= MAX_MESSAGE_DEPTH)
    if accepted:
        decoded = decode_json(body)
        assert comparable(decoded) == comparable(parse_dict_oracle(body))
        # what the spool keeps of an accepted request (binary protobuf) replays
        assert decode_protobuf(decoded.SerializeToString()) == decoded
    else:
        with pytest.raises(DecodeError, match=f"nested deeper than {MAX_MESSAGE_DEPTH}"):
            decode_json(body)
