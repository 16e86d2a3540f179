"""Admission before work: count requests and bytes in flight before anything is decoded.

A request past either limit is refused at once with a retry hint instead of being read,
decoded and queued, so memory stays bounded under any overload. Admission also carries
the collector's drain: once a stop begins, new requests are refused, and those still in
flight when the grace period ends are cancelled and answered "retry elsewhere".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from collector_service.errors import Overloaded, ShuttingDown
from collector_service.telemetry.metrics import CollectorMetrics

T = TypeVar("T")

PRESSURE_FRACTION = 0.75
"""Above this share of either limit, payloads are downgraded to summaries."""

OVERLOAD_RETRY_S = 1.0
SHUTDOWN_RETRY_S = 1.0


class Admission:
    """Limits on requests and bytes in flight; the gate every transport goes through."""

    def __init__(self, max_requests: int, max_bytes: int, metrics: CollectorMetrics) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._requests = 0
        self._bytes = 0
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._abort = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def under_pressure(self) -> bool:
        return (self._requests > self.max_requests * PRESSURE_FRACTION
                or self._bytes > self.max_bytes * PRESSURE_FRACTION)

    def check(self, nbytes: int) -> None:
        """Raise if a request of ``nbytes`` would be refused now (nothing is reserved)."""
        if self._draining:
            self._metrics.refusals.labels("shutting_down").inc()
            raise ShuttingDown(SHUTDOWN_RETRY_S)
        if self._requests >= self.max_requests:
            self._metrics.refusals.labels("inflight_requests").inc()
            raise Overloaded(OVERLOAD_RETRY_S, "too many requests in flight")
        # A lone request is always admitted, however large: max_request_bytes bounds it.
        if self._requests and self._bytes + nbytes > self.max_bytes:
            self._metrics.refusals.labels("inflight_bytes").inc()
            raise Overloaded(OVERLOAD_RETRY_S, "too many bytes in flight")

    @asynccontextmanager
    async def admit(self, nbytes: int) -> AsyncIterator[None]:
        """Hold a place for one request of ``nbytes`` while the block runs."""
        self.check(nbytes)
        self._requests += 1
        self._bytes += nbytes
        self._idle.clear()
        self._publish()
        try:
            yield
        finally:
            self._requests -= 1
            self._bytes -= nbytes
            self._publish()
            if self._requests == 0:
                self._idle.set()

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless the drain's grace period ends first (then ShuttingDown)."""
        if self._abort.is_set():
            raise ShuttingDown(SHUTDOWN_RETRY_S)
        task = asyncio.ensure_future(work)
        aborted = asyncio.ensure_future(self._abort.wait())
        try:
            await asyncio.wait({task, aborted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            aborted.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._metrics.refusals.labels("shutting_down").inc()
            raise ShuttingDown(SHUTDOWN_RETRY_S)
        return task.result()

    async def drain(self, grace_s: float) -> bool:
        """Refuse new requests, wait up to ``grace_s`` for those in flight, cancel the rest.

        Returns True when every request in flight finished on its own.
        """
        self._draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
            return True
        except TimeoutError:
            self._abort.set()
            await self._idle.wait()
            return False

    def _publish(self) -> None:
        self._metrics.inflight_requests.set(self._requests)
        self._metrics.inflight_bytes.set(self._bytes)
