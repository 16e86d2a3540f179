"""The pure OTLP → rows mapping: every contract attribute, and every kind of bad value."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector_service.ingest.mapping import map_request
from collector_service.store.rows import StepRow
from tests.otlp_builders import any_value, request, span
from xray_otel import conventions as c

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def map_one_step(attributes: dict[str, object], **kwargs: object) -> StepRow:
    batch = map_request(request(span("step", {c.STEP_TYPE: "filter", **attributes},
                                     **kwargs)), RECEIVED)  # type: ignore[arg-type]
    assert len(batch.steps) == 1, batch
    return batch.steps[0]


def problems(step: StepRow) -> dict[str, str]:
    return {a.attribute: a.problem for a in step.adjustments}


def test_every_step_attribute_maps_to_its_column() -> None:
    trace_id = bytes(range(1, 17))
    step = map_one_step({
        c.RUN_ID: "run-1", c.RUN_PIPELINE: "competitor_search", c.RUN_ENTITY: "B0PHONE",
        c.STEP_NAME: "filter_candidates", c.STEP_SEQ: 3,
        c.STEP_CANDIDATES_IN: 5000, c.STEP_CANDIDATES_OUT: 50,
        c.STEP_WHY: "Dropped 99% below relevance 0.7",
        c.STEP_WHY_JSON: json.dumps({"top_reject_reasons": {"category_mismatch": 4720}}),
        c.STEP_INPUT: json.dumps({"asin": "B0PHONE"}), c.STEP_OUTPUT: json.dumps([1, 2]),
        c.metric_attribute("latency_ms"): 12.5, c.metric_attribute("tokens"): 900,
        c.artifact_attribute("raw_response"): "<html>…</html>",
        "custom.flag": True,
    }, trace_id=trace_id, parent=bytes(8 * [7]))
    assert step.run_id == "run-1"
    assert step.pipeline == "competitor_search"
    assert step.entity == "B0PHONE"
    assert (step.step_name, step.step_type, step.seq) == ("filter_candidates", "filter", 3)
    assert (step.candidates_in, step.candidates_out) == (5000, 50)
    assert step.why == "Dropped 99% below relevance 0.7"
    assert step.why_json == {"top_reject_reasons": {"category_mismatch": 4720}}
    assert step.input == {"asin": "B0PHONE"}
    assert step.output == [1, 2]
    assert step.metrics == {"latency_ms": 12.5, "tokens": 900}
    assert [a.attribute for a in step.artifacts] == [c.artifact_attribute("raw_response")]
    assert step.artifacts[0].data == "<html>…</html>".encode()
    assert step.attributes == {"custom.flag": True}
    assert step.trace_id == trace_id.hex()
    assert step.parent_span_id == "07" * 8
    assert step.service_name == "test-service"
    assert (step.status, step.error) == ("ok", None)
    assert step.adjustments == ()


def test_defaults_name_from_span_and_run_id_from_trace() -> None:
    trace_id = bytes(range(16))
    step = map_one_step({}, trace_id=trace_id)
    assert step.step_name == "step"
    assert step.run_id == trace_id.hex()
    assert step.seq is None and step.candidates_in is None


def test_run_span_and_other_spans() -> None:
    run = span("run", {c.RUN_PIPELINE: "p", c.RUN_ENTITY: "e", c.RUN_ID: "r", "k": "v"},
               error="boom")
    plain = span("http GET", {"http.method": "GET"})
    batch = map_request(request(run, plain), RECEIVED)
    assert batch.steps == () and batch.ignored_spans == 1
    (row,) = batch.runs
    assert (row.run_id, row.pipeline, row.entity, row.status, row.error) == (
        "r", "p", "e", "error", "boom")
    assert row.attributes == {"k": "v"} and row.from_run_span


def test_steps_imply_a_pending_run_that_the_run_span_completes() -> None:
    trace_id = bytes(range(16))
    first = span("a", {c.STEP_TYPE: "llm", c.RUN_ID: "r"}, trace_id=trace_id, start_ns=10**18)
    second = span("b", {c.STEP_TYPE: "rank", c.RUN_ID: "r", c.RUN_PIPELINE: "p"},
                  trace_id=trace_id, start_ns=10**18 + 10**9)
    (pending,) = map_request(request(first, second), RECEIVED).runs
    assert (pending.status, pending.pipeline, pending.from_run_span) == ("pending", "p", False)
    assert pending.started_at == datetime.fromtimestamp(1e9, UTC)
    run = span("run", {c.RUN_PIPELINE: "p", c.RUN_ID: "r"}, trace_id=trace_id)
    (complete,) = map_request(request(first, run, second), RECEIVED).runs
    assert complete.from_run_span and complete.status == "ok"


def test_exception_event_becomes_the_error() -> None:
    event = Span.Event(name="exception", attributes=[
        KeyValue(key="exception.type", value=any_value("ValueError")),
        KeyValue(key="exception.message", value=any_value("bad price")),
        KeyValue(key="exception.stacktrace", value=any_value("Traceback …")),
    ])
    step = map_one_step({}, error="ignored", events=[event])
    assert (step.status, step.error) == ("error", "ValueError: bad price")
    assert step.attributes["exception.stacktrace"] == "Traceback …"


def test_wrong_types_keep_the_step_and_say_what_changed() -> None:
    step = map_one_step({
        c.STEP_CANDIDATES_IN: "42", c.STEP_CANDIDATES_OUT: -5, c.STEP_SEQ: True,
        c.STEP_WHY_JSON: "[1, 2]", c.STEP_INPUT: "not json",
        c.metric_attribute("nan"): float("nan"), c.metric_attribute("text"): "fast",
        c.STEP_TYPE: "classifier",
    })
    assert step.candidates_in == 42
    assert step.candidates_out is None and step.seq is None and step.why_json is None
    assert step.input == "not json"
    assert step.metrics == {}
    assert step.step_type == "other"
    found = problems(step)
    assert "converted" in found[c.STEP_CANDIDATES_IN]
    assert "negative" in found[c.STEP_CANDIDATES_OUT]
    assert "boolean" in found[c.STEP_SEQ]
    assert "JSON object" in found[c.STEP_WHY_JSON]
    assert "finite" in found[c.metric_attribute("nan")]
    assert "number" in found[c.metric_attribute("text")]
    assert "classifier" in found[c.STEP_TYPE]
    # Rejected values are kept, as sent, in attributes.
    assert step.attributes[c.STEP_CANDIDATES_OUT] == -5
    assert step.attributes[c.STEP_WHY_JSON] == "[1, 2]"
    assert step.attributes[c.metric_attribute("nan")] == "nan"
    assert step.attributes[c.STEP_TYPE] == "classifier"


def test_whole_number_doubles_are_integers_without_complaint() -> None:
    step = map_one_step({c.STEP_CANDIDATES_IN: 5000.0, c.STEP_CANDIDATES_OUT: 12.5})
    assert step.candidates_in == 5000
    assert step.candidates_out is None and c.STEP_CANDIDATES_OUT in problems(step)


def test_nul_bytes_and_invalid_utf8_are_replaced() -> None:
    step = map_one_step({
        c.STEP_WHY: "a\x00b", c.STEP_NAME: b"\xff\xfename",
        c.STEP_WHY_JSON: json.dumps({"k\x00": "v\x00"}), "other": "x\x00",
    })
    assert step.why == "a\ufffdb"
    assert step.step_name == "\ufffd\ufffdname"
    assert step.why_json == {"k\ufffd": "v\ufffd"}
    assert step.attributes == {"other": "x\ufffd"}
    assert set(problems(step)) == {c.STEP_WHY, c.STEP_NAME, c.STEP_WHY_JSON, "other"}


def test_absurdly_deep_json_is_not_stored_as_structure() -> None:
    deep = "[" * 5000 + "]" * 5000
    nested: object = "leaf"
    for _ in range(40):  # protobuf itself refuses ~100 message levels; X-Ray stops at 32
        nested = [nested]
    step = map_one_step({c.STEP_WHY_JSON: deep, c.STEP_OUTPUT: deep, "native": nested})
    assert step.why_json is None and step.output is None
    assert "deeper" in problems(step)[c.STEP_WHY_JSON]
    assert step.attributes[c.STEP_WHY_JSON] == deep
    assert "native" in problems(step)


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ('{"score": NaN}', {"score": "nan"}, "non-finite"),
        ('{"k": "a\\u0000b"}', {"k": "a\ufffdb"}, "NUL"),
        ('{"a": ' * 40 + "1" + "}" * 40, None, "deeper"),
        ('{"note": "' + "{" * 40 + '"}', {"note": "{" * 40}, None),  # only looks deep
    ],
)
def test_json_text_is_checked_whatever_its_shape(
    text: str, column: object, problem: str | None
) -> None:
    step = map_one_step({c.STEP_WHY_JSON: text, c.STEP_OUTPUT: text})
    assert step.why_json == column and step.output == column
    noted = problems(step)
    if problem is None:
        assert not noted
    else:
        assert problem in noted[c.STEP_WHY_JSON] and problem in noted[c.STEP_OUTPUT]


def test_spans_without_a_usable_identity_are_rejected() -> None:
    good = span("ok", {c.STEP_TYPE: "llm"})
    no_trace = span("bad", {c.STEP_TYPE: "llm"}, trace_id=bytes(16))
    short_span = span("bad", {c.STEP_TYPE: "llm"}, span_id=b"\x01\x02")
    batch = map_request(request(good, no_trace, short_span), RECEIVED)
    assert len(batch.steps) == 1
    assert [r.reason.split()[0] for r in batch.rejected] == ["trace_id", "span_id"]


def test_missing_and_reversed_times() -> None:
    no_times = map_one_step({}, start_ns=0, duration_ns=0)
    assert no_times.started_at == no_times.ended_at == RECEIVED
    reversed_ = map_one_step({}, start_ns=2 * 10**18, duration_ns=-10**9)
    assert reversed_.ended_at == reversed_.started_at
    assert "span.time" in problems(reversed_)


def test_overlong_run_id_falls_back_to_trace_id() -> None:
    trace_id = bytes(range(16))
    step = map_one_step({c.RUN_ID: "x" * 1000}, trace_id=trace_id)
    assert step.run_id == trace_id.hex() and c.RUN_ID in problems(step)


def test_long_labels_are_truncated() -> None:
    step = map_one_step({c.RUN_PIPELINE: "p" * 5000, c.STEP_NAME: "n" * 600})
    assert len(step.pipeline or "") == 512 and len(step.step_name) == 512
    assert {c.RUN_PIPELINE, c.STEP_NAME} <= set(problems(step))
