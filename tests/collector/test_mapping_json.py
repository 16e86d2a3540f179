"""JSON on the ingest path: each value parsed and encoded once, with the standard
library's exact results (orjson does the common case, never a different value)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from collector_service.ingest.mapping import map_request
from collector_service.ingest.offload import oversized_attributes, plan
from collector_service.store.postgres import _step_values
from collector_service.store.rows import JsonCache, StepRow, json_bytes
from tests.otlp_builders import request, span
from xray_otel import conventions as c

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
INPUT_COLUMN = 9  # position of ``input`` in the COPY row


def map_one_step(attributes: dict[str, object]) -> StepRow:
    batch = map_request(request(span("step", {c.STEP_TYPE: "filter", **attributes})),
                        RECEIVED)  # type: ignore[arg-type]
    assert len(batch.steps) == 1, batch
    return batch.steps[0]


@pytest.mark.parametrize("text", [
    "18446744073709551616",                    # past 64 bits: orjson would round it
    "-9223372036854775809",
    '{"id": 123456789012345678901234567890}',
    '[99999999999999999999, "x"]',
    "18446744073709551615",                    # the largest orjson keeps exact
    '{"big": 1e300, "small": 1e-7, "neg": -0.0}',
    '{"note": "the+e+ in a string", "n": 1}',
    '{"a": 1, "a": 2}',
    "1E5",
    '["\\ud83d\\ude00", "NaN inside a string", "\\u00e9"]',  # a surrogate pair is fine
])
def test_input_json_reads_exactly_as_the_standard_library_reads_it(text: str) -> None:
    step = map_one_step({c.STEP_INPUT: text})
    assert step.input == json.loads(text)
    assert type(step.input) is type(json.loads(text))
    assert json.loads(_step_values(step)[INPUT_COLUMN]) == json.loads(text)
    assert not step.adjustments


@pytest.mark.parametrize(("text", "stored"), [
    ('{"x": NaN}', {"x": "nan"}),
    ('{"x": Infinity}', {"x": "inf"}),
    ('["\\ud800"]', ["\ufffd"]),
    ('{"k\\u0000": "v\\u0000"}', {"k\ufffd": "v\ufffd"}),
])
def test_json_orjson_refuses_takes_the_standard_librarys_path(text: str, stored: Any) -> None:
    step = map_one_step({c.STEP_INPUT: text})
    assert step.input == stored
    assert step.adjustments  # what changed is said, as before
    assert json.loads(_step_values(step)[INPUT_COLUMN]) == stored


def test_a_parsed_value_is_encoded_once_and_those_bytes_go_everywhere() -> None:
    document = json.dumps({"items": [{"sku": f"S{i}", "score": i / 7} for i in range(300)]})
    step = map_one_step({c.STEP_INPUT: document, c.STEP_OUTPUT: '{"small": true}'})
    encoded = step.encoded.encode(step.input)
    assert encoded is step.encoded.encode(step.input)  # cached, not encoded again
    assert json.loads(encoded) == json.loads(document)
    (payload,) = plan(step, ceiling=4096)
    assert payload.attribute == c.STEP_INPUT
    assert payload.data is encoded  # the artifact body is the bytes already made
    assert _step_values(step)[INPUT_COLUMN] == encoded.decode()


def test_cache_never_serves_bytes_of_another_object() -> None:
    cache = JsonCache()
    first: dict[str, Any] = {"a": 1}
    assert cache.encode(first) == b'{"a":1}'
    second = {"a": 2}
    assert cache.encode(second) == b'{"a":2}'
    assert cache.text(None) is None


def test_json_bytes_falls_back_to_the_standard_library() -> None:
    assert json_bytes({1: "a"}) == b'{"1":"a"}'  # non-string keys: orjson refuses them
    assert json_bytes([2**70]) == b"[1180591620717411303424]"
    assert json_bytes({"é": "✓"}) == '{"é":"✓"}'.encode()  # UTF-8, not \\u escapes


@pytest.mark.parametrize("attributes", [
    {},
    {"a": "x" * 100, "b": {"nested": ["y" * 50]}},
    {"a": "x" * 5000},
    {"a": "é" * 1500},           # 3,000 bytes: under the ceiling in UTF-8
    {"a": "é" * 2100},           # 4,200 bytes: over it, though 2,100 characters
    {"a": ["z" * 3000], "b": ["z" * 3000], "c": "short"},
    {"a": {"k": "v" * 5000}, "b": "w" * 5000},
])
def test_oversized_attributes_are_the_ones_a_value_by_value_walk_finds(
        attributes: dict[str, Any]) -> None:
    ceiling = 4096
    expected = []
    for key, value in attributes.items():
        if isinstance(value, str) and len(value.encode()) > ceiling:
            expected.append((key, value.encode()))
        elif isinstance(value, dict | list) and len(json_bytes(value)) > ceiling:
            expected.append((key, json_bytes(value)))
    found = [(p.attribute, p.data) for p in oversized_attributes(attributes, ceiling)]
    assert found == expected
