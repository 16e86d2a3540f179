"""Admission: limits on requests and bytes in flight, pressure, and the drain on stop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from collector_service.errors import Overloaded, ShuttingDown
from collector_service.ingest.admission import Admission
from collector_service.telemetry.metrics import CollectorMetrics


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def refusals(metrics: CollectorMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("xray_refusals_total", {"reason": reason})
    return value or 0.0


@in_loop
async def test_requests_and_bytes_are_limited_before_any_work() -> None:
    metrics = CollectorMetrics()
    admission = Admission(max_requests=2, max_bytes=100, metrics=metrics)
    async with admission.admit(60):
        with pytest.raises(Overloaded, match="bytes"):
            async with admission.admit(50):
                pass
        async with admission.admit(40):
            assert metrics.registry.get_sample_value("xray_inflight_bytes") == 100
            with pytest.raises(Overloaded, match="requests"):
                async with admission.admit(0):
                    pass
    assert metrics.registry.get_sample_value("xray_inflight_requests") == 0
    assert (refusals(metrics, "inflight_bytes"), refusals(metrics, "inflight_requests")) == (1, 1)


@in_loop
async def test_a_lone_request_is_admitted_whatever_its_size() -> None:
    admission = Admission(max_requests=2, max_bytes=10, metrics=CollectorMetrics())
    async with admission.admit(1000):
        assert admission.under_pressure


@in_loop
async def test_drain_waits_for_requests_in_flight_and_refuses_new_ones() -> None:
    admission = Admission(max_requests=4, max_bytes=1000, metrics=CollectorMetrics())
    release = asyncio.Event()

    async def request() -> str:
        async with admission.admit(10):
            return await admission.run(_wait_then("stored", release))

    running = asyncio.create_task(request())
    await asyncio.sleep(0)
    drained = asyncio.create_task(admission.drain(grace_s=60))
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        async with admission.admit(10):
            pass
    release.set()
    assert await running == "stored"
    assert await drained is True


@in_loop
async def test_requests_still_running_after_the_grace_are_refused_retryably() -> None:
    metrics = CollectorMetrics()
    admission = Admission(max_requests=4, max_bytes=1000, metrics=metrics)
    never = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck() -> str:
        try:
            return await _wait_then("stored", never)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def request() -> str:
        async with admission.admit(10):
            return await admission.run(stuck())

    running = asyncio.create_task(request())
    await asyncio.sleep(0)
    assert await admission.drain(grace_s=0.05) is False
    with pytest.raises(ShuttingDown):
        await running
    assert cancelled.is_set(), "the work behind the refused request was cancelled"
    assert refusals(metrics, "shutting_down") == 1


async def _wait_then(value: str, event: asyncio.Event) -> str:
    await event.wait()
    return value
