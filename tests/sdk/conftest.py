"""Fixtures for the SDK tests: a real ``TracerProvider`` per test, never the global one.

``traced`` gives a provider with ``XRaySpanProcessor`` and a synchronous in-memory
exporter; helpers find spans by name and read their attributes. Tests about
``configure()`` use ``configured`` (or a subprocess) and always shut X-Ray down after.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import xray_otel as xray
from xray_otel import _guard, _setup


@dataclass
class Traced:
    """A private provider whose finished spans land in ``exporter``."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    processor: xray.XRaySpanProcessor

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]

    def attrs(self, name: str) -> Mapping[str, Any]:
        return dict(self.one(name).attributes or {})


def make_traced(**processor_kwargs: Any) -> Traced:
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    processor = xray.XRaySpanProcessor(**processor_kwargs)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Traced(provider, exporter, processor)


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = make_traced()
    yield t
    t.provider.shutdown()
    _guard.set_active_guard(_guard.SizeGuard())


@pytest.fixture
def configured() -> Iterator[None]:
    """Make sure X-Ray is not configured before the test and is shut down after it."""
    assert _setup._current is None, "a previous test left X-Ray configured"
    yield
    xray.shutdown(timeout=1.0)
    _guard.set_active_guard(_guard.SizeGuard())


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])
