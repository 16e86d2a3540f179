"""Best effort: whatever happens to the collector or exporter, the pipeline is unchanged.

Every test runs the same small pipeline and checks its return value and its own
exception come back exactly as without X-Ray, quickly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import xray_otel as xray

from .conftest import Traced

PROTOCOLS = ["grpc", "http/protobuf"]


class PipelineError(Exception):
    pass


@xray.step("search", name="search", count_candidates=True)
def search(query: str) -> list[str]:
    return [f"{query}-{i}" for i in range(20)]


@xray.step("filter", name="filter", count_candidates=True)
def keep(candidates: list[str]) -> list[str]:
    kept = candidates[::4]
    xray.record(why="kept every 4th", metrics={"ratio": 0.25}, artifacts={"page": "x" * 100_000})
    return kept


@xray.step("rank", name="rank")
def fail(candidates: list[str]) -> None:
    raise PipelineError(len(candidates))


def pipeline(provider: TracerProvider, runs: int = 20) -> list[list[str]]:
    """The pipeline under test: its results, and its own error, must survive X-Ray."""
    results = []
    for i in range(runs):
        with xray.run("best-effort", entity=str(i), tracer_provider=provider):
            results.append(keep(search(str(i))))
    error = None
    try:
        with xray.run("best-effort", tracer_provider=provider):
            fail(["a"])
    except PipelineError as exc:
        error = exc
    assert error is not None and error.args == (1,)
    return results


EXPECTED = [[f"{i}-{j}" for j in range(0, 20, 4)] for i in range(20)]


def _configure(endpoint: str, protocol: str, **kwargs: object) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    xray.configure(
        endpoint=endpoint,
        protocol=protocol,
        tracer_provider=provider,
        schedule_delay_millis=50,
        **kwargs,  # type: ignore[arg-type]
    )
    return provider


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collector_not_running(configured: None, closed_port: int, protocol: str) -> None:
    provider = _configure(f"http://127.0.0.1:{closed_port}", protocol, export_timeout=0.5)
    before = xray.stats()
    started = time.monotonic()
    assert pipeline(provider) == EXPECTED
    assert time.monotonic() - started < 5
    assert xray.flush(timeout=5) is True  # drained: the exports failed fast
    delta = xray.stats() - before
    assert delta.failed > 0 and delta.exported == 0, delta


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collector_accepts_but_never_answers(
    configured: None, hanging_port: int, protocol: str
) -> None:
    provider = _configure(
        f"http://127.0.0.1:{hanging_port}", protocol
    )  # default 10 s export timeout
    started = time.monotonic()
    assert pipeline(provider) == EXPECTED
    assert time.monotonic() - started < 5
    time.sleep(0.2)  # let the worker get stuck on the silent collector
    started = time.monotonic()
    assert xray.flush(timeout=0.5) is False
    assert xray.shutdown(timeout=0.5) is False
    assert time.monotonic() - started < 3
    final = xray.stats()
    time.sleep(0.3)  # the abandoned export ends (gRPC: cancelled) but is not counted twice
    assert xray.stats() == final
    assert pipeline(provider, runs=2) == EXPECTED[:2]  # after shutdown: still fine


class Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter bug")


def test_exporter_raising(configured: None) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    before = xray.stats()
    xray.configure(span_exporter=Raising(), tracer_provider=provider, schedule_delay_millis=50)
    assert pipeline(provider) == EXPECTED
    assert xray.flush(timeout=5) is True
    delta = xray.stats() - before
    assert delta.failed == 20 * 3 + 2 and delta.internal_errors == 0, delta


class Stuck(SpanExporter):
    def __init__(self) -> None:
        import threading

        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_queue_overflow_is_dropped_and_counted(configured: None) -> None:
    provider, stuck = TracerProvider(shutdown_on_exit=False), Stuck()
    before = xray.stats()
    xray.configure(
        span_exporter=stuck,
        tracer_provider=provider,
        max_queue_size=10,
        max_export_batch_size=2,
        schedule_delay_millis=10,
    )
    started = time.monotonic()
    assert pipeline(provider) == EXPECTED
    assert time.monotonic() - started < 5
    delta = xray.stats() - before
    assert 62 - 12 <= delta.dropped <= 62 - 10, delta  # 62 spans, queue 10 + a stuck batch


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@xray.step("filter", name="messy", count_candidates=True)
def messy(candidates: list[str]) -> list[str]:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    xray.record(
        candidates_in=float("nan"),  # type: ignore[arg-type]
        candidates_out=-3,
        why=Unprintable(),  # type: ignore[arg-type]
        why_json=cyclic,  # type: ignore[arg-type]
        input={"x": Unprintable(), "nan": float("nan")},
        output="y" * 3_000_000,
        metrics={"nan": float("nan"), "inf": float("inf"), "s": "1", "b": True, 1: 2},  # type: ignore[dict-item]
        artifacts={"a": object(), "b": "z" * 3_000_000},  # type: ignore[dict-item]
    )
    xray.record(metrics="not a mapping", artifacts=42)  # type: ignore[arg-type]
    if not candidates:
        raise PipelineError("empty")
    return candidates[:1]


def test_invalid_record_values(traced: Traced) -> None:
    before = xray.stats()
    with xray.run("p", tracer_provider=traced.provider):
        assert messy(["a", "b"]) == ["a"]
        with pytest.raises(PipelineError, match="empty"):
            messy([])
    delta = xray.stats() - before
    assert delta.internal_errors == 0 and delta.rejected_values > 0 and delta.truncated_values > 0
    assert len(traced.named("messy")) == 2


def _exit_script(endpoint: str, protocol: str) -> str:
    return textwrap.dedent(
        f"""
        import time
        import xray_otel as xray

        xray.configure(service_name="exit-test", endpoint="{endpoint}", protocol="{protocol}",
                       schedule_delay_millis=100)

        @xray.step("llm", name="ask")
        def ask(i):
            xray.record(why="w", input={{"i": i}})
            return i * 2

        with xray.run("exit", entity="e"):
            total = sum(ask(i) for i in range(200))
        time.sleep(0.5)  # an export is now in flight (or backing off)
        with xray.run("exit", entity="late"):
            total += sum(ask(i) for i in range(50))
        print("result", total)
        """
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("collector", ["dead", "hanging"])
def test_interpreter_exit_is_bounded(
    closed_port: int, hanging_port: int, protocol: str, collector: str
) -> None:
    port = closed_port if collector == "dead" else hanging_port
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _exit_script(f"http://127.0.0.1:{port}", protocol)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=os.getcwd(),
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["result", str(2 * sum(range(200)) + 2 * sum(range(50)))]
    assert elapsed < 15, f"exit took {elapsed:.1f}s"
