"""``xray.step``: the attribute contract, naming, errors, counting, misuse at definition time."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import xray_otel as xray
from xray_otel import conventions as xc

from .conftest import Traced


class Catalog:
    @xray.step("search")
    def lookup(self, query: str) -> list[str]:
        return [query]


def test_decorated_step_sets_every_contract_attribute(traced: Traced) -> None:
    @xray.step("filter", count_candidates=True)
    def keep_relevant(candidates: list[int]) -> list[int]:
        kept = [c for c in candidates if c > 2]
        xray.record(
            why="dropped 2 below threshold",
            why_json={"top_reject_reasons": {"low_score": 2}},
            input={"threshold": 2},
            output=kept,
            metrics={"threshold": 2, "precision": 0.5},
            artifacts={"html": "<html/>", "raw": b"\x00\x01"},
        )
        return kept

    with xray.run("p", entity="B0", tracer_provider=traced.provider) as r:
        assert keep_relevant([1, 2, 3, 4]) == [3, 4]
    name = "test_decorated_step_sets_every_contract_attribute.<locals>.keep_relevant"
    assert traced.attrs(name) == {
        xc.STEP_TYPE: "filter",
        xc.STEP_NAME: name,
        xc.RUN_ID: r.id,
        xc.RUN_PIPELINE: "p",
        xc.STEP_SEQ: 1,
        xc.STEP_CANDIDATES_IN: 4,
        xc.STEP_CANDIDATES_OUT: 2,
        xc.STEP_WHY: "dropped 2 below threshold",
        xc.STEP_WHY_JSON: '{"top_reject_reasons": {"low_score": 2}}',
        xc.STEP_INPUT: '{"threshold": 2}',
        xc.STEP_OUTPUT: "[3, 4]",
        xc.metric_attribute("threshold"): 2,
        xc.metric_attribute("precision"): 0.5,
        xc.artifact_attribute("html"): "<html/>",
        xc.artifact_attribute("raw"): b"\x00\x01",
    }


def test_name_defaults_to_qualname_and_can_be_set(traced: Traced) -> None:
    @xray.step("llm", name="pick")
    def choose() -> str:
        return "x"

    with xray.run("p", tracer_provider=traced.provider):
        choose()
        Catalog().lookup("q")
    assert traced.attrs("pick")[xc.STEP_NAME] == "pick"
    assert traced.attrs("Catalog.lookup")[xc.STEP_TYPE] == "search"
    assert choose.__name__ == "choose" and choose.__wrapped__ is not None  # type: ignore[attr-defined]


def test_step_type_enum_is_accepted(traced: Traced) -> None:
    @xray.step(xray.StepType.RANK, name="r")
    def rank() -> None:
        return None

    with xray.run("p", tracer_provider=traced.provider):
        rank()
    value = traced.attrs("r")[xc.STEP_TYPE]
    assert value == "rank" and type(value) is str


def test_context_manager_form(traced: Traced) -> None:
    with xray.run("p", tracer_provider=traced.provider), xray.step("rank") as s:
        s.record(candidates_in=5, candidates_out=1)
        assert s.name == "rank" and s.type == "rank"
    attrs = traced.attrs("rank")
    assert attrs[xc.STEP_CANDIDATES_IN] == 5 and attrs[xc.STEP_SEQ] == 1


def test_async_context_manager_form(traced: Traced) -> None:
    async def main() -> None:
        async with (
            xray.run("p", tracer_provider=traced.provider),
            xray.step("llm", name="ask") as s,
        ):
            await asyncio.sleep(0)
            xray.record(why="async")
            assert s.span.is_recording()

    asyncio.run(main())
    assert traced.attrs("ask")[xc.STEP_WHY] == "async"


def test_a_step_spec_can_be_reused_concurrently(traced: Traced) -> None:
    ranking = xray.step("rank", name="shared")

    async def use(i: int) -> None:
        async with ranking:
            await asyncio.sleep(0.001 * (i % 3))
            xray.record(candidates_in=i)

    async def main() -> None:
        async with xray.run("p", tracer_provider=traced.provider):
            await asyncio.gather(*(use(i) for i in range(10)))

    asyncio.run(main())
    spans = traced.named("shared")
    assert sorted(s.attributes[xc.STEP_CANDIDATES_IN] for s in spans) == list(range(10))  # type: ignore[index]
    assert all(s.end_time for s in spans)


def test_nesting_parent_child(traced: Traced) -> None:
    @xray.step("llm", name="inner")
    def inner() -> int:
        return 1

    @xray.step("transform", name="outer")
    def outer() -> int:
        return inner() + 1

    with xray.run("p", tracer_provider=traced.provider):
        assert outer() == 2
    assert traced.one("inner").parent.span_id == traced.one("outer").context.span_id  # type: ignore[union-attr]
    assert traced.attrs("outer")[xc.STEP_SEQ] == 1
    assert traced.attrs("inner")[xc.STEP_SEQ] == 2


@pytest.mark.parametrize("kind", ["function", "coroutine", "context"])
def test_user_exception_is_recorded_and_reraised_unchanged(traced: Traced, kind: str) -> None:
    error = ValueError("bad candidate")

    @xray.step("filter", name="f")
    def f() -> None:
        raise error

    @xray.step("filter", name="f")
    async def g() -> None:
        raise error

    with pytest.raises(ValueError) as caught, xray.run("p", tracer_provider=traced.provider):
        if kind == "function":
            f()
        elif kind == "coroutine":
            asyncio.run(g())
        else:
            with xray.step("filter", name="f"):
                raise error
    assert caught.value is error
    assert caught.value.__traceback__ is not None
    span = traced.one("f")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad candidate"
    event = span.events[0]
    assert event.name == xc.EXCEPTION_EVENT
    assert event.attributes[xc.EXCEPTION_MESSAGE] == "bad candidate"  # type: ignore[index]
    assert "raise error" in event.attributes[xc.EXCEPTION_STACKTRACE]  # type: ignore[index,operator]


def test_return_values_are_passed_through_unchanged(traced: Traced) -> None:
    sentinel = object()

    @xray.step("other", count_candidates=True)
    def identity(x: Any) -> Any:
        return x

    @xray.step("other")
    async def aidentity(x: Any) -> Any:
        return x

    with xray.run("p", tracer_provider=traced.provider):
        assert identity(sentinel) is sentinel
        assert asyncio.run(aidentity(sentinel)) is sentinel


def test_count_candidates_uses_first_sized_argument_and_result(traced: Traced) -> None:
    @xray.step("filter", name="f", count_candidates=True)
    def f(threshold: float, items: tuple[int, ...], label: str = "x") -> set[int]:
        return {i for i in items if i > threshold}

    @xray.step("filter", name="explicit", count_candidates=True)
    def explicit(items: list[int]) -> list[int]:
        xray.record(candidates_out=99)
        return items

    @xray.step("filter", name="uncountable", count_candidates=True)
    def uncountable(text: str) -> str:
        return text

    with xray.run("p", tracer_provider=traced.provider):
        f(1.5, (1, 2, 3))
        explicit([1])
        uncountable("abc")
    assert traced.attrs("f")[xc.STEP_CANDIDATES_IN] == 3
    assert traced.attrs("f")[xc.STEP_CANDIDATES_OUT] == 2
    assert traced.attrs("explicit")[xc.STEP_CANDIDATES_OUT] == 99
    assert xc.STEP_CANDIDATES_IN not in traced.attrs("uncountable")
    assert xc.STEP_CANDIDATES_OUT not in traced.attrs("uncountable")


def test_without_count_candidates_nothing_is_counted(traced: Traced) -> None:
    @xray.step("filter", name="f")
    def f(items: list[int]) -> list[int]:
        return items

    with xray.run("p", tracer_provider=traced.provider):
        f([1, 2])
    assert xc.STEP_CANDIDATES_IN not in traced.attrs("f")


def test_step_outside_a_run_uses_the_trace_id(traced: Traced) -> None:
    @xray.step("llm", name="lonely", tracer_provider=traced.provider)
    def lonely() -> None:
        return None

    lonely()
    lonely()
    spans = traced.named("lonely")
    for span in spans:
        attrs = span.attributes or {}
        assert attrs[xc.RUN_ID] == format(span.context.trace_id, "032x")  # type: ignore[union-attr]
        assert attrs[xc.STEP_SEQ] == 1  # each call is its own trace
        assert xc.RUN_PIPELINE not in attrs


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("bogus",), {}, ValueError),
        (("LLM",), {}, ValueError),
        ((3,), {}, TypeError),
        ((None,), {}, TypeError),
        (("llm",), {"name": 5}, TypeError),
        (("llm",), {"count_candidates": "yes"}, TypeError),
    ],
)
def test_bad_decorator_arguments_raise_at_definition(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):

        @xray.step(*args, **kwargs)
        def f() -> None:
            return None


def test_bare_decorator_and_non_callable_raise_at_definition() -> None:
    with pytest.raises(TypeError, match="not bare"):

        @xray.step  # type: ignore[arg-type]
        def f() -> None:
            return None

    with pytest.raises(TypeError, match="function"):
        xray.step("llm")(42)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="function"):
        xray.step("llm")(Catalog)


def test_misuse_at_module_import_raises(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad_pipeline.py").write_text(
        "import xray_otel as xray\n\n@xray.step('shopping')\ndef f():\n    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="shopping"):
        __import__("bad_pipeline")


def test_misused_context_manager_does_not_raise(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, "xray_otel"),
        xray.run("p", tracer_provider=traced.provider),
        xray.step("made-up-type-for-cm") as s,
    ):  # type: ignore[arg-type]
        s.record(why="still recorded")
    attrs = traced.attrs("other")  # the name defaults to the (normalized) type
    assert attrs[xc.STEP_TYPE] == "other" and attrs[xc.STEP_WHY] == "still recorded"
    assert "made-up-type-for-cm" in caplog.text


def test_step_spans_use_the_runs_provider_or_their_own(traced: Traced) -> None:
    other = __import__("tests.sdk.conftest", fromlist=["make_traced"]).make_traced()

    @xray.step("rank", name="own", tracer_provider=other.provider)
    def own() -> None:
        return None

    with xray.run("p", tracer_provider=traced.provider):
        own()
        with xray.step("rank", name="inherited"):
            pass
    assert traced.named("inherited") and not traced.named("own")
    assert other.named("own")
    other.provider.shutdown()


def test_huge_step_name_is_size_guarded(traced: Traced) -> None:
    with xray.run("p", tracer_provider=traced.provider), xray.step("llm", name="n" * 100_000):
        pass
    (span,) = [s for s in traced.spans() if s.name.startswith("nnn")]
    assert len(span.name) <= 64 * 1024 and "truncated by xray" in span.name
