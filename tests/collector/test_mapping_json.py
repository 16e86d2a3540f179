"""JSON on the ingest path: each value parsed and encoded once, with the standard
library's exact results (orjson does the common case, never a different value)."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest

from collector_service.ingest.mapping import map_request
from collector_service.ingest.offload import oversized_attributes, plan
from collector_service.store.rows import JsonCache, StepRow, compact_json
from collector_service.store.steps import _new_step_values, _staged_step_values
from tests.otlp_builders import request, span
from xray_otel import conventions as c

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
INPUT_COLUMN = 9  # position of ``input`` in the COPY rows


def copied_input(step: StepRow) -> Any:
    """``input`` as each COPY route sends it (staging text; ``jsonb``'s binary form: version
    byte 1, then the text), parsed; both must agree."""
    staged = _staged_step_values(step)[INPUT_COLUMN]
    new = _new_step_values(step)[INPUT_COLUMN]
    assert new == b"\x01" + staged.encode()
    return json.loads(staged)


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
    assert copied_input(step) == json.loads(text)
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
    assert copied_input(step) == stored


def test_a_parsed_value_is_encoded_once_and_that_text_goes_everywhere() -> None:
    document = json.dumps({"items": [{"sku": f"S{i}", "score": i / 7} for i in range(300)]})
    step = map_one_step({c.STEP_INPUT: document, c.STEP_OUTPUT: '{"small": true}'})
    text = step.encoded.text(step.input)
    assert text is step.encoded.text(step.input)  # cached, not encoded again
    assert json.loads(text) == json.loads(document)
    (payload,) = plan(step, ceiling=4096)
    assert payload.attribute == c.STEP_INPUT
    assert payload.data == text.encode()  # the artifact body is that text
    assert _staged_step_values(step)[INPUT_COLUMN] is text
    assert _new_step_values(step)[INPUT_COLUMN] == b"\x01" + text.encode()


def test_cache_never_serves_the_text_of_another_object() -> None:
    cache = JsonCache()
    first: dict[str, Any] = {"a": 1}
    assert cache.text(first) == '{"a":1}'
    second = {"a": 2}
    assert cache.text(second) == '{"a":2}'
    assert cache.column(None) is None
    assert cache.size({"é": "✓"}) == len('{"é":"✓"}'.encode())


def test_cached_json_holds_only_its_own_size() -> None:
    """orjson's bytes each hold a 4 KiB buffer: a row kept for a whole request must keep
    text of the JSON's own size, or a request of short values costs 4 KiB per value."""
    values = [{"n": i} for i in range(2000)]
    cache = JsonCache()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for value in values:
            cache.text(value)
        per_value = (tracemalloc.get_traced_memory()[0] - before) / len(values)
    finally:
        tracemalloc.stop()
    assert per_value < 1024, per_value


def test_compact_json_falls_back_to_the_standard_library() -> None:
    assert compact_json({1: "a"}) == '{"1":"a"}'  # non-string keys: orjson refuses them
    assert compact_json([2**70]) == "[1180591620717411303424]"
    assert compact_json({"é": "✓"}) == '{"é":"✓"}'  # not \\u escapes


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
        elif isinstance(value, dict | list) and len(compact_json(value).encode()) > ceiling:
            expected.append((key, compact_json(value).encode()))
    found = [(p.attribute, p.data) for p in oversized_attributes(attributes, ceiling)]
    assert found == expected
