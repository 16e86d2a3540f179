"""``xray.run``: the run span, its id, and how steps inside it find it."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import StatusCode

import xray_otel as xray
from xray_otel import conventions as xc

from .conftest import Traced


def test_run_span_carries_the_run_attributes(traced: Traced) -> None:
    with xray.run("competitor_search", entity="B00ASIN", tracer_provider=traced.provider) as r:
        assert xray.current_run_id() == r.id
    attrs = traced.attrs("competitor_search")
    assert attrs == {
        xc.RUN_PIPELINE: "competitor_search",
        xc.RUN_ENTITY: "B00ASIN",
        xc.RUN_ID: r.id,
    }
    assert len(r.id) == 32 and int(r.id, 16) >= 0
    assert xray.current_run_id() is None


def test_run_ids_are_unique_and_can_be_given(traced: Traced) -> None:
    ids = set()
    for _ in range(50):
        with xray.run("p", tracer_provider=traced.provider) as r:
            ids.add(r.id)
    assert len(ids) == 50
    with xray.run("p", run_id="my-run-7", tracer_provider=traced.provider) as given:
        pass
    assert given.id == "my-run-7"
    assert traced.named("p")[-1].attributes[xc.RUN_ID] == "my-run-7"  # type: ignore[index]


def test_run_without_entity_has_no_entity_attribute(traced: Traced) -> None:
    with xray.run("p", tracer_provider=traced.provider):
        pass
    assert xc.RUN_ENTITY not in traced.attrs("p")


def test_steps_are_children_of_the_run_and_carry_its_id(traced: Traced) -> None:
    @xray.step("search")
    def search() -> list[int]:
        return [1, 2]

    with xray.run("p", tracer_provider=traced.provider) as r:
        search()
    run_span, step_span = (
        traced.one("p"),
        traced.one("test_steps_are_children_of_the_run_and_carry_its_id.<locals>.search"),
    )
    assert step_span.parent is not None
    assert step_span.parent.span_id == run_span.context.span_id  # type: ignore[union-attr]
    assert step_span.context.trace_id == run_span.context.trace_id  # type: ignore[union-attr]
    assert step_span.attributes[xc.RUN_ID] == r.id  # type: ignore[index]
    assert step_span.attributes[xc.RUN_PIPELINE] == "p"  # type: ignore[index]


def test_run_records_and_reraises_the_same_exception(traced: Traced) -> None:
    boom = KeyError("missing")
    with pytest.raises(KeyError) as caught, xray.run("p", tracer_provider=traced.provider):
        raise boom
    assert caught.value is boom
    span = traced.one("p")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == [xc.EXCEPTION_EVENT]
    assert span.events[0].attributes[xc.EXCEPTION_TYPE] == "KeyError"  # type: ignore[index]


def test_async_with_run(traced: Traced) -> None:
    @xray.step("llm")
    async def ask() -> str:
        await asyncio.sleep(0)
        return "answer"

    async def main() -> tuple[str, str]:
        async with xray.run("p", entity="e", tracer_provider=traced.provider) as r:
            return await ask(), r.id

    answer, run_id = asyncio.run(main())
    assert answer == "answer"
    step_attrs = traced.attrs("test_async_with_run.<locals>.ask")
    assert step_attrs[xc.RUN_ID] == run_id
    assert step_attrs[xc.STEP_SEQ] == 1


def test_nested_runs_steps_belong_to_the_innermost(traced: Traced) -> None:
    with xray.run("outer", tracer_provider=traced.provider) as outer:
        with xray.step("rank", name="a"):
            pass
        with (
            xray.run("inner", tracer_provider=traced.provider) as inner,
            xray.step("rank", name="b"),
        ):
            pass
        with xray.step("rank", name="c"):
            pass
    assert traced.attrs("a")[xc.RUN_ID] == outer.id
    assert traced.attrs("b")[xc.RUN_ID] == inner.id
    assert traced.attrs("c")[xc.RUN_ID] == outer.id
    assert (traced.attrs("a")[xc.STEP_SEQ], traced.attrs("c")[xc.STEP_SEQ]) == (1, 2)
    assert traced.attrs("b")[xc.STEP_SEQ] == 1


def test_record_in_a_run_outside_any_step_is_a_no_op(traced: Traced) -> None:
    with (
        xray.step("filter", name="outer", tracer_provider=traced.provider),
        xray.run("p", tracer_provider=traced.provider),
    ):
        xray.record(why="should not land on the outer step")
    assert xc.STEP_WHY not in traced.attrs("outer")


def test_odd_run_arguments_never_raise(traced: Traced) -> None:
    with xray.run(42, entity=object(), run_id=7, tracer_provider=traced.provider) as r:  # type: ignore[arg-type]
        pass
    assert r.pipeline == "42" and r.id == "7"
    assert traced.attrs("42")[xc.RUN_ENTITY].startswith("<object object")
    with xray.run("", tracer_provider=traced.provider):
        pass
    assert traced.named("unnamed")


def test_run_without_any_sdk_is_harmless() -> None:
    """With only the API (no provider set), runs and steps cost nothing and break nothing."""
    with xray.run("p", entity="e") as r, xray.step("llm") as s:
        s.record(why="nobody listens", metrics={"x": 1})
        xray.record(candidates_in=3)
    assert r.id and not s.span.is_recording()


def test_huge_run_values_are_size_guarded(traced: Traced) -> None:
    with (
        xray.run("p", entity="E" * 200_000, tracer_provider=traced.provider) as r,
        xray.step("llm", name="s"),
    ):
        pass
    attrs = traced.attrs("p")
    assert len(attrs[xc.RUN_ENTITY]) <= 64 * 1024
    assert "truncated by xray: 200000 bytes" in attrs[xc.RUN_ENTITY]
    assert list(attrs[xc.SDK_TRUNCATED]) == [xc.RUN_ENTITY]
    assert traced.attrs("s")[xc.RUN_ID] == r.id
