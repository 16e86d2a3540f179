"""``xray.record``: validation, serialization and size guarding — never an exception."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from decimal import Decimal
from typing import Any

import pytest

import xray_otel as xray
from xray_otel import conventions as xc

from .conftest import Traced, make_traced


def _record_in_step(traced: Traced, **kwargs: Any) -> dict[str, Any]:
    with xray.run("p", tracer_provider=traced.provider), xray.step("other", name="s"):
        xray.record(**kwargs)
    return dict(traced.attrs("s"))


class Opaque:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Opaque()"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    def __str__(self) -> str:
        raise RuntimeError("no str either")


def test_json_fields_survive_any_object(traced: Traced) -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    attrs = _record_in_step(
        traced,
        input={"items": [Opaque()], "when": {1, 2}, (1, 2): "tuple key"},
        output={"nan": math.nan, "inf": -math.inf, "cycle": cyclic, "broken": BrokenRepr()},
        why_json={"n": 3},
    )
    parsed_in = json.loads(attrs[xc.STEP_INPUT])
    assert parsed_in["items"] == ["<Opaque> Opaque()"]
    assert sorted(parsed_in["when"]) == [1, 2]
    assert parsed_in["(1, 2)"] == "tuple key"
    parsed_out = json.loads(attrs[xc.STEP_OUTPUT])  # strict JSON: no NaN tokens
    assert parsed_out["nan"] == "nan" and parsed_out["inf"] == "-inf"
    assert "nested too deep" in json.dumps(parsed_out["cycle"])
    assert "unrepresentable BrokenRepr" in parsed_out["broken"]
    assert json.loads(attrs[xc.STEP_WHY_JSON]) == {"n": 3}


def test_why_json_that_is_not_an_object_is_wrapped(traced: Traced) -> None:
    attrs = _record_in_step(traced, why_json=["a", "b"])
    assert json.loads(attrs[xc.STEP_WHY_JSON]) == {"value": ["a", "b"]}


def test_bad_metrics_are_dropped_and_counted(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    before = xray.stats()
    with caplog.at_level(logging.WARNING, "xray_otel"):
        attrs = _record_in_step(
            traced,
            metrics={
                "ok_int": 3,
                "ok_float": 0.25,
                "decimal_is_not_real": Decimal("1.5"),
                "nan_in_test_record": math.nan,  # unique names: the log is rate limited per name
                "inf_in_test_record": math.inf,
                "flag": True,
                "text": "12",
                "huge_int": 2**80,
                "": 1,
            },
        )
    metrics = {k: v for k, v in attrs.items() if k.startswith(xc.STEP_METRIC_PREFIX)}
    assert metrics == {
        xc.metric_attribute("ok_int"): 3,
        xc.metric_attribute("ok_float"): 0.25,
        xc.metric_attribute("huge_int"): float(2**80),
    }
    assert (xray.stats() - before).rejected_values == 6
    assert "nan_in_test_record=nan: metrics must be finite" in caplog.text


def test_bad_counts_and_wrong_types_never_raise(traced: Traced) -> None:
    before = xray.stats()
    attrs = _record_in_step(
        traced,
        candidates_in=-1,
        candidates_out="12",
        why=12345,
        metrics=[1, 2],
        artifacts={"ok": bytearray(b"xy"), "doc": {"a": 1}, "none": None, 3: "bad name"},
    )
    assert xc.STEP_CANDIDATES_IN not in attrs and xc.STEP_CANDIDATES_OUT not in attrs
    assert attrs[xc.STEP_WHY] == "12345"
    assert attrs[xc.artifact_attribute("ok")] == b"xy"
    assert attrs[xc.artifact_attribute("doc")] == '{"a": 1}'
    assert xc.artifact_attribute("none") not in attrs
    assert (xray.stats() - before).rejected_values == 5


def test_lone_surrogates_are_repaired(traced: Traced) -> None:
    attrs = _record_in_step(traced, why="bad \ud800 text", input={"k": "\udfff"})
    attrs[xc.STEP_WHY].encode("utf-8")  # would raise if the surrogate had survived
    attrs[xc.STEP_INPUT].encode("utf-8")


def test_huge_values_are_truncated_with_a_marker() -> None:
    traced = make_traced(max_value_bytes=4096, max_artifact_bytes=4096)
    before = xray.stats()
    huge = "é" * 10_000  # 20,000 UTF-8 bytes
    blob = bytes(range(256)) * 100
    attrs = _record_in_step(
        traced, why=huge, artifacts={"page": blob, "small": "fine"}, input=["x" * 5000]
    )
    why = attrs[xc.STEP_WHY]
    digest = hashlib.sha256(huge.encode()).hexdigest()
    assert why.endswith(f"…[truncated by xray: 20000 bytes, sha256={digest}]")
    assert len(why.encode()) <= 4096 and why.startswith("éé")
    page = attrs[xc.artifact_attribute("page")]
    assert isinstance(page, bytes) and len(page) <= 4096
    assert page.endswith(f"sha256={hashlib.sha256(blob).hexdigest()}]".encode())
    assert attrs[xc.artifact_attribute("small")] == "fine"
    assert set(attrs[xc.SDK_TRUNCATED]) == {
        xc.STEP_WHY,
        xc.STEP_INPUT,
        xc.artifact_attribute("page"),
    }
    assert (xray.stats() - before).truncated_values == 3
    traced.provider.shutdown()
    xray.XRaySpanProcessor()  # restore the default limits for the other tests


def test_truncated_names_accumulate_over_several_records() -> None:
    traced = make_traced(max_value_bytes=1024)
    with xray.run("p", tracer_provider=traced.provider), xray.step("llm", name="s"):
        xray.record(why="w" * 2000)
        xray.record(output="o" * 2000)
    assert list(traced.attrs("s")[xc.SDK_TRUNCATED]) == [xc.STEP_WHY, xc.STEP_OUTPUT]
    traced.provider.shutdown()
    xray.XRaySpanProcessor()


def test_record_outside_a_step_is_a_no_op(traced: Traced) -> None:
    before = xray.stats()
    with xray.run("p", tracer_provider=traced.provider):
        xray.record(why="nowhere", metrics={"x": math.nan})  # not even validated
    assert xray.stats() - before == xray.XRayStats()
    assert xc.STEP_WHY not in traced.attrs("p")


def test_record_after_the_step_ended_is_ignored(traced: Traced) -> None:
    with xray.run("p", tracer_provider=traced.provider), xray.step("llm", name="s") as s:
        pass
    s.record(why="too late")
    assert xc.STEP_WHY not in traced.attrs("s")


def test_later_records_override_earlier_ones(traced: Traced) -> None:
    with xray.run("p", tracer_provider=traced.provider), xray.step("llm", name="s"):
        xray.record(candidates_in=3, why="first")
        xray.record(why="second")
    attrs = traced.attrs("s")
    assert attrs[xc.STEP_WHY] == "second" and attrs[xc.STEP_CANDIDATES_IN] == 3
