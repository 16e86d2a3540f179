"""Runs, steps and sequence numbers under threads, asyncio tasks and concurrent runs."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import xray_otel as xray
from xray_otel import conventions as xc

from .conftest import Traced


def _by_run(traced: Traced, step_name: str) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for span in traced.named(step_name):
        attrs: Any = span.attributes
        seqs.setdefault(attrs[xc.RUN_ID], []).append(attrs[xc.STEP_SEQ])
    return seqs


@xray.step("llm", name="work")
def work(i: int) -> int:
    return i * 2


def test_propagate_carries_the_run_into_a_thread_pool(traced: Traced) -> None:
    with (
        xray.run("p", tracer_provider=traced.provider) as r,
        xray.step("search", name="fan-out"),
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        results = list(pool.map(xray.propagate(work), range(8)))
    assert results == [i * 2 for i in range(8)]
    fan_out = traced.one("fan-out")
    spans = traced.named("work")
    assert len(spans) == 8
    assert all(s.attributes[xc.RUN_ID] == r.id for s in spans)  # type: ignore[index]
    assert all(s.parent.span_id == fan_out.context.span_id for s in spans)  # type: ignore[union-attr]
    assert sorted(s.attributes[xc.STEP_SEQ] for s in spans) == list(range(2, 10))  # type: ignore[index,type-var]


def test_context_thread_pool_executor(traced: Traced) -> None:
    with (
        xray.run("p", tracer_provider=traced.provider) as r,
        xray.ContextThreadPoolExecutor(max_workers=3) as pool,
    ):
        futures = [pool.submit(work, i) for i in range(6)]
        assert [f.result() for f in futures] == [i * 2 for i in range(6)]
        assert list(pool.map(work, [10])) == [20]
    assert set(_by_run(traced, "work")) == {r.id}
    assert sorted(_by_run(traced, "work")[r.id]) == list(range(1, 8))


def test_propagate_with_a_plain_thread(traced: Traced) -> None:
    with xray.run("p", tracer_provider=traced.provider) as r:
        thread = threading.Thread(target=xray.propagate(work), args=(1,))
        thread.start()
        thread.join()
    assert traced.attrs("work")[xc.RUN_ID] == r.id


def test_without_propagation_a_thread_does_not_see_the_run(traced: Traced) -> None:
    """Documents why ``propagate`` exists: threads start from an empty context."""
    seen: list[str | None] = []
    with xray.run("p", tracer_provider=traced.provider):
        thread = threading.Thread(target=lambda: seen.append(xray.current_run_id()))
        thread.start()
        thread.join()
    assert seen == [None]


def test_propagate_rejects_a_non_callable() -> None:
    try:
        xray.propagate(3)  # type: ignore[arg-type]
    except TypeError:
        return
    raise AssertionError("expected TypeError")


def test_asyncio_tasks_inherit_the_run(traced: Traced) -> None:
    @xray.step("llm", name="ask")
    async def ask(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 4))
        return i

    async def main() -> tuple[list[int], str]:
        async with xray.run("p", tracer_provider=traced.provider) as r:
            tasks = [asyncio.create_task(ask(i)) for i in range(12)]
            return list(await asyncio.gather(*tasks)), r.id

    results, run_id = asyncio.run(main())
    assert results == list(range(12))
    assert sorted(_by_run(traced, "ask")[run_id]) == list(range(1, 13))
    run_span = traced.one("p")
    assert all(
        s.parent.span_id == run_span.context.span_id  # type: ignore[union-attr]
        for s in traced.named("ask")
    )


RUNS, STEPS = 20, 30


def test_concurrent_runs_in_threads_number_their_steps_independently(traced: Traced) -> None:
    barrier = threading.Barrier(RUNS)

    def one_run(k: int) -> str:
        with xray.run("p", entity=str(k), tracer_provider=traced.provider) as r:
            barrier.wait()
            with ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(xray.propagate(work), range(STEPS)))
        return r.id

    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        run_ids = list(pool.map(one_run, range(RUNS)))
    seqs = _by_run(traced, "work")
    assert set(seqs) == set(run_ids)
    for run_id in run_ids:
        assert sorted(seqs[run_id]) == list(range(1, STEPS + 1)), run_id


def test_concurrent_runs_in_tasks_number_their_steps_independently(traced: Traced) -> None:
    @xray.step("rank", name="score")
    async def score(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def one_run(k: int) -> str:
        async with xray.run("p", entity=str(k), tracer_provider=traced.provider) as r:
            await asyncio.gather(*(score(i) for i in range(STEPS)))
        return r.id

    async def main() -> list[str]:
        return list(await asyncio.gather(*(one_run(k) for k in range(RUNS))))

    run_ids = asyncio.run(main())
    seqs = _by_run(traced, "score")
    assert len(seqs) == RUNS
    for run_id in run_ids:
        assert sorted(seqs[run_id]) == list(range(1, STEPS + 1))
