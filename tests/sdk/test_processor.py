"""``XRaySpanProcessor`` with raw OpenTelemetry spans: stamping, normalizing, guarding."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context

import xray_otel as xray
from xray_otel import conventions as xc

from .conftest import Traced, make_traced


def _tracer(traced: Traced) -> trace.Tracer:
    return traced.provider.get_tracer("raw-producer")


def test_raw_steps_inside_a_run_share_its_counter(traced: Traced) -> None:
    tracer = _tracer(traced)
    with xray.run("p", tracer_provider=traced.provider) as r:
        with xray.step("search", name="decorated-1"):
            pass
        with tracer.start_as_current_span("raw", attributes={xc.STEP_TYPE: "llm"}):
            pass
        with xray.step("search", name="decorated-2"):
            pass
    raw = traced.attrs("raw")
    assert raw[xc.RUN_ID] == r.id and raw[xc.RUN_PIPELINE] == "p"
    assert [traced.attrs(n)[xc.STEP_SEQ] for n in ("decorated-1", "raw", "decorated-2")] == [
        1,
        2,
        3,
    ]


def test_raw_run_and_steps_without_the_sdk_decorators(traced: Traced) -> None:
    tracer = _tracer(traced)
    with tracer.start_as_current_span("run", attributes={xc.RUN_PIPELINE: "raw-pipeline"}) as root:
        for i in range(3):
            with tracer.start_as_current_span(f"s{i}", attributes={xc.STEP_TYPE: "rank"}):
                pass
        with tracer.start_as_current_span("not-a-step"):
            pass
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert traced.attrs("run")[xc.RUN_ID] == trace_id
    assert [traced.attrs(f"s{i}")[xc.STEP_SEQ] for i in range(3)] == [1, 2, 3]
    assert all(traced.attrs(f"s{i}")[xc.RUN_ID] == trace_id for i in range(3))
    assert traced.attrs("not-a-step") == {}
    assert traced.processor._counters == {}  # freed when the run span ended


def test_producer_supplied_run_id_is_kept_and_counted(traced: Traced) -> None:
    tracer = _tracer(traced)
    attrs = {xc.STEP_TYPE: "llm", xc.RUN_ID: "external-run"}
    with tracer.start_as_current_span(
        "run", attributes={xc.RUN_PIPELINE: "x", xc.RUN_ID: "external-run"}
    ):
        for name in ("a", "b"):
            with tracer.start_as_current_span(name, attributes=attrs):
                pass
        assert "external-run" in traced.processor._counters
    assert (traced.attrs("a")[xc.STEP_SEQ], traced.attrs("b")[xc.STEP_SEQ]) == (1, 2)
    assert traced.processor._counters == {}


def test_standalone_raw_steps_are_freed_with_their_local_root(traced: Traced) -> None:
    tracer = _tracer(traced)
    with tracer.start_as_current_span("request"):
        with tracer.start_as_current_span("a", attributes={xc.STEP_TYPE: "llm"}):
            pass
        assert len(traced.processor._counters) == 1
    assert traced.processor._counters == {}


def test_open_runs_are_bounded() -> None:
    traced = make_traced(max_open_runs=5)
    tracer = _tracer(traced)
    for i in range(20):
        span = tracer.start_span(f"s{i}", attributes={xc.STEP_TYPE: "llm", xc.RUN_ID: f"run-{i}"})
        span.end()  # each run id is distinct and no run span ever ends: only the bound frees
    assert len(traced.processor._counters) <= 5
    traced.provider.shutdown()
    xray.XRaySpanProcessor()


def test_unknown_step_type_becomes_other_with_one_warning_per_value(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = _tracer(traced)
    with (
        caplog.at_level(logging.WARNING, "xray_otel"),
        xray.run("p", tracer_provider=traced.provider),
    ):
        for i in range(3):
            with tracer.start_as_current_span(
                f"s{i}", attributes={xc.STEP_TYPE: "shopping-unique"}
            ):
                pass
        with tracer.start_as_current_span("enum", attributes={xc.STEP_TYPE: xray.StepType.LLM}):
            pass
    assert [traced.attrs(f"s{i}")[xc.STEP_TYPE] for i in range(3)] == ["other"] * 3
    assert caplog.text.count("shopping-unique") == 1
    assert traced.attrs("enum")[xc.STEP_TYPE] == "llm"


def test_oversized_start_attributes_of_foreign_spans_are_guarded() -> None:
    traced = make_traced(max_value_bytes=2048, max_artifact_bytes=2048)
    tracer = _tracer(traced)
    big = "x" * 10_000
    blob = b"\xff" * 5000
    with tracer.start_as_current_span(
        "raw",
        attributes={
            xc.STEP_TYPE: "llm",
            xc.STEP_WHY: big,
            xc.artifact_attribute("body"): blob,
            "tags": ["t" * 500] * 10,
            "small": "ok",
            "number": 5,
        },
    ):
        pass
    attrs = traced.attrs("raw")
    assert attrs[xc.STEP_WHY].endswith(
        f"…[truncated by xray: 10000 bytes, sha256={hashlib.sha256(big.encode()).hexdigest()}]"
    )
    assert len(attrs[xc.STEP_WHY]) <= 2048
    assert len(attrs[xc.artifact_attribute("body")]) <= 2048
    tags = attrs["tags"]
    assert sum(len(t) for t in tags) <= 2048 + 100 and tags[-1].startswith("…[truncated by xray")
    assert attrs["small"] == "ok" and attrs["number"] == 5
    assert set(attrs[xc.SDK_TRUNCATED]) == {xc.STEP_WHY, xc.artifact_attribute("body"), "tags"}
    traced.provider.shutdown()
    xray.XRaySpanProcessor()


class Uploader:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, int, str]] = []

    def upload(self, name: str, data: bytes, content_type: str) -> str | None:
        self.calls.append((name, len(data), content_type))
        if self.fail:
            raise OSError("store down")
        return f"ref:{hashlib.sha256(data).hexdigest()[:12]}"


@pytest.mark.parametrize("fail", [False, True])
def test_artifact_uploader_hook(fail: bool) -> None:
    uploader = Uploader(fail=fail)
    assert isinstance(uploader, xray.ArtifactUploader)
    traced = make_traced(max_value_bytes=1024, max_artifact_bytes=1024,
                         artifact_uploader=uploader)
    with xray.run("p", tracer_provider=traced.provider), xray.step("llm", name="s"):
        xray.record(artifacts={"prompt": "p" * 3000}, why="w" * 3000)
    attrs = traced.attrs("s")
    assert uploader.calls == [(xc.artifact_attribute("prompt"), 3000, "text/plain")]
    artifact = attrs[xc.artifact_attribute("prompt")]
    if fail:
        assert "truncated by xray" in artifact
        assert set(attrs[xc.SDK_TRUNCATED]) == {xc.STEP_WHY, xc.artifact_attribute("prompt")}
    else:
        assert artifact.startswith("ref:")
        assert list(attrs[xc.SDK_TRUNCATED]) == [xc.STEP_WHY]  # why is not an artifact
    traced.provider.shutdown()
    xray.XRaySpanProcessor()


def test_bad_processor_arguments_raise_at_construction() -> None:
    with pytest.raises(ValueError):
        xray.XRaySpanProcessor(max_value_bytes=10)
    with pytest.raises(TypeError):
        xray.XRaySpanProcessor(max_value_bytes="64k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        xray.XRaySpanProcessor(artifact_uploader=object())  # type: ignore[arg-type]


class Exploding:
    """A span whose every attribute access raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"boom: {name}")


def test_hooks_never_raise_and_count_internal_errors() -> None:
    processor = xray.XRaySpanProcessor()
    before = xray.stats()
    processor._counters["x"] = iter(())  # type: ignore[assignment]  # make on_end do work
    processor.on_start(Exploding(), parent_context=Context())  # type: ignore[arg-type]
    processor.on_end(Exploding())  # type: ignore[arg-type]
    assert (xray.stats() - before).internal_errors == 2


def test_shutdown_is_idempotent_and_force_flush_keeps_the_sdk_signature() -> None:
    processor = xray.XRaySpanProcessor()
    assert processor.force_flush() is True
    assert processor.force_flush(timeout_millis=1) is True
    processor.shutdown()
    processor.shutdown()
    processor.on_start(Exploding())  # type: ignore[arg-type]  # ignored after shutdown
