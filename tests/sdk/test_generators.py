"""Steps around generators and async generators: one span for the whole iteration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import xray_otel as xray
from xray_otel import conventions as xc

from .conftest import Traced


def test_generator_span_covers_the_whole_iteration(traced: Traced) -> None:
    @xray.step("llm", name="child")
    def child(i: int) -> int:
        return i

    @xray.step("search", name="pages", count_candidates=True)
    def pages(n: int) -> Iterator[int]:
        for i in range(n):
            yield child(i)

    @xray.step("rank", name="consumer")
    def consume(i: int) -> None:
        return None

    with xray.run("p", tracer_provider=traced.provider):
        gen = pages(3)
        assert traced.named("pages") == []  # the body has not started yet
        for item in gen:
            consume(item)
            assert traced.named("pages") == []  # still open between items
    pages_span = traced.one("pages")
    assert pages_span.status.status_code is StatusCode.UNSET
    children = traced.named("child")
    assert len(children) == 3
    assert all(c.parent.span_id == pages_span.context.span_id for c in children)  # type: ignore[union-attr]
    run_span = traced.one("p")
    consumers = traced.named("consumer")
    # between items the consumer runs in its own context, not inside the generator's step
    assert all(c.parent.span_id == run_span.context.span_id for c in consumers)  # type: ignore[union-attr]
    assert pages_span.attributes[xc.STEP_CANDIDATES_OUT] == 3  # type: ignore[index]
    assert pages_span.start_time < children[0].start_time  # type: ignore[operator]
    assert pages_span.end_time > children[-1].end_time  # type: ignore[operator]


def test_a_with_block_across_a_yield_does_not_leak_into_the_consumer(traced: Traced) -> None:
    @xray.step("search", name="gen")
    def gen() -> Iterator[int]:
        with xray.step("filter", name="inside"):
            yield 1
            yield 2

    with xray.run("p", tracer_provider=traced.provider) as r:
        for _ in gen():
            assert trace.get_current_span() is not None
            assert xray.current_run_id() == r.id
            with xray.step("rank", name="consumer"):
                pass
    run_span = traced.one("p")
    assert all(
        c.parent.span_id == run_span.context.span_id  # type: ignore[union-attr]
        for c in traced.named("consumer")
    )
    assert traced.one("inside").parent.span_id == traced.one("gen").context.span_id  # type: ignore[union-attr]


def test_generator_send_throw_and_return_value_are_forwarded(traced: Traced) -> None:
    @xray.step("transform", name="echo")
    def echo() -> Generator[str, str, str]:
        received = []
        try:
            while True:
                received.append((yield f"got {received[-1] if received else None}"))
        except KeyError:
            yield "handled"
        return ",".join(received)

    with xray.run("p", tracer_provider=traced.provider):
        g = echo()
        assert next(g) == "got None"
        assert g.send("a") == "got a"
        assert g.throw(KeyError("k")) == "handled"
        with pytest.raises(StopIteration) as stop:
            next(g)
    assert stop.value.value == "a"
    assert traced.one("echo").status.status_code is StatusCode.UNSET


def test_generator_exception_is_recorded_and_reraised(traced: Traced) -> None:
    error = RuntimeError("page 2 failed")

    @xray.step("search", name="pages")
    def pages() -> Iterator[int]:
        yield 1
        raise error

    with pytest.raises(RuntimeError) as caught, xray.run("p", tracer_provider=traced.provider):
        list(pages())
    assert caught.value is error
    assert traced.one("pages").status.status_code is StatusCode.ERROR


def test_breaking_out_early_closes_the_step_without_error(traced: Traced) -> None:
    closed = []

    @xray.step("search", name="endless", count_candidates=True)
    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    with xray.run("p", tracer_provider=traced.provider):
        for i in endless():
            if i == 4:
                break
    assert closed == [True]
    span = traced.one("endless")
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[xc.STEP_CANDIDATES_OUT] == 5  # type: ignore[index]


def test_async_generator_span_covers_iteration(traced: Traced) -> None:
    @xray.step("llm", name="child")
    async def child(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @xray.step("search", name="stream", count_candidates=True)
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield await child(i)

    @xray.step("rank", name="consumer")
    def consume(i: int) -> int:
        return i

    async def main() -> list[int]:
        async with xray.run("p", tracer_provider=traced.provider):
            return [consume(i) async for i in stream(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    stream_span, run_span = traced.one("stream"), traced.one("p")
    assert all(
        c.parent.span_id == stream_span.context.span_id  # type: ignore[union-attr]
        for c in traced.named("child")
    )
    assert all(
        c.parent.span_id == run_span.context.span_id  # type: ignore[union-attr]
        for c in traced.named("consumer")
    )
    assert stream_span.attributes[xc.STEP_CANDIDATES_OUT] == 3  # type: ignore[index]
    assert stream_span.end_time > max(c.end_time for c in traced.named("child"))  # type: ignore[operator,type-var]


def test_async_generator_asend_athrow_aclose(traced: Traced) -> None:
    finalized = []

    @xray.step("transform", name="agen", tracer_provider=traced.provider)
    async def agen() -> AsyncIterator[str]:
        try:
            value = yield "first"
            try:
                yield f"echo {value}"
            except KeyError:
                yield "handled"
            yield "never consumed"
        finally:
            finalized.append(True)

    async def main() -> None:
        g = agen()
        assert await g.asend(None) == "first"
        assert await g.asend("x") == "echo x"
        assert await g.athrow(KeyError("k")) == "handled"
        await g.aclose()

    asyncio.run(main())
    assert finalized == [True]
    assert traced.one("agen").status.status_code is StatusCode.UNSET


def test_async_generator_exception_is_recorded_and_reraised(traced: Traced) -> None:
    error = ConnectionError("stream broke")

    @xray.step("search", name="stream", tracer_provider=traced.provider)
    async def stream() -> AsyncIterator[int]:
        yield 1
        raise error

    async def main() -> None:
        async for _ in stream():
            pass

    with pytest.raises(ConnectionError) as caught:
        asyncio.run(main())
    assert caught.value is error
    assert traced.one("stream").status.status_code is StatusCode.ERROR
