"""X-Ray SDK overhead benchmark: ``python benchmarks/sdk_overhead.py``.

1. ``step_cost_ratio``: the cost of one ``@xray.step`` call that also calls
   ``xray.record`` (with ``XRaySpanProcessor`` on the provider) divided by the cost of a
   bare OpenTelemetry span given the same attributes by hand. Both providers feed the
   same downstream processor (``BatchSpanProcessor`` into a no-op exporter); repetitions
   are interleaved and the medians compared. Target: <= 1.3.
2. ``dead_collector_overhead``: latency of one run of a 10-step pipeline doing 1 ms of
   CPU work per step (each step records counts and a why), with X-Ray configured with
   its defaults (OTLP/gRPC) against a closed loopback port, against the same functions
   without X-Ray; single runs alternate, medians compared. Target: <= 5 %. Measured
   once the export queue is full (the collector stays down: X-Ray sheds its spans); the
   seconds before that, while the queue fills, are printed too. For reference the same
   pipeline with bare OpenTelemetry spans (BatchSpanProcessor + OTLP/gRPC to a dead
   port) is measured in the same way: the floor any span-based tracer pays. Each tracer
   runs in a process of its own.

Prints both figures and exits 0 (it reports; it does not judge).
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import xray_otel as xray
from xray_otel import conventions as xc

STEP_CALLS = 1_000
STEP_REPS = 15
PIPELINE_STEPS = 10
PIPELINE_PAIRS = 300
WORK_S = 0.001


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider(*extra: object) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    for processor in extra:
        provider.add_span_processor(processor)  # type: ignore[arg-type]
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=8192))
    return provider


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_step_cost() -> float:
    bare_provider = _provider()
    xray_provider = _provider(xray.XRaySpanProcessor())
    tracer = bare_provider.get_tracer("bench")
    items = list(range(100))
    run_id = "0" * 32

    def bare_loop() -> None:
        with tracer.start_as_current_span("bench") as root:
            root.set_attributes({xc.RUN_PIPELINE: "bench", xc.RUN_ID: run_id})
            for seq in range(1, STEP_CALLS + 1):
                start_attrs = {
                    xc.STEP_TYPE: "filter",
                    xc.STEP_NAME: "filter_items",
                    xc.RUN_ID: run_id,
                    xc.RUN_PIPELINE: "bench",
                    xc.STEP_SEQ: seq,
                }
                with tracer.start_as_current_span("filter_items", attributes=start_attrs) as span:
                    kept = items[:10]
                    span.set_attributes(
                        {
                            xc.STEP_CANDIDATES_IN: len(items),
                            xc.STEP_CANDIDATES_OUT: len(kept),
                            xc.STEP_WHY: "kept the top 10",
                            xc.metric_attribute("threshold"): 0.7,
                        }
                    )

    @xray.step("filter")
    def filter_items(candidates: list[int]) -> list[int]:
        kept = candidates[:10]
        xray.record(
            candidates_in=len(candidates),
            candidates_out=len(kept),
            why="kept the top 10",
            metrics={"threshold": 0.7},
        )
        return kept

    def xray_loop() -> None:
        with xray.run("bench", tracer_provider=xray_provider):
            for _ in range(STEP_CALLS):
                filter_items(items)

    bare_loop(), xray_loop()  # warm up
    bare, xr = [], []
    for _ in range(STEP_REPS):
        bare.append(_time(bare_loop))
        xr.append(_time(xray_loop))
    bare_us = statistics.median(bare) / STEP_CALLS * 1e6
    xray_us = statistics.median(xr) / STEP_CALLS * 1e6
    print(f"bare span: {bare_us:.1f} us/step, xray step + record: {xray_us:.1f} us/step")
    bare_provider.shutdown()
    xray_provider.shutdown()
    return xray_us / bare_us


def _work() -> None:
    end = time.perf_counter() + WORK_S
    while time.perf_counter() < end:
        pass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


FILL_ROUNDS_BARE = -(-(2048 + 512) // (PIPELINE_STEPS + 1))
"""Runs until the stock BatchSpanProcessor's queue (2048) is full, its exporter holding 512."""


def dead_collector_child(tracing: str) -> dict[str, float]:
    """In a process of its own: a 10-step pipeline without tracing and with ``tracing``
    (``xray`` or ``otel``) against a dead collector, alternating single runs.

    One tracer per process, as in a real deployment: a second tracer's export thread
    would disturb the first one's figures. Two phases: while the export queue fills
    (the collector just went away) and after (it stays away: the target).
    """
    dead = f"http://127.0.0.1:{_closed_port()}"

    def plain_step(i: int) -> int:
        _work()
        return i

    def plain_pipeline() -> None:
        for i in range(PIPELINE_STEPS):
            plain_step(i)

    if tracing == "xray":
        xray.configure(service_name="bench", endpoint=dead)  # defaults, as a user would

        @xray.step("transform")
        def traced_step(i: int) -> int:
            _work()
            xray.record(candidates_in=10, candidates_out=5, why="bench")
            return i

        def traced_pipeline() -> None:
            with xray.run("bench", entity="B000"):
                for i in range(PIPELINE_STEPS):
                    traced_step(i)

        def queue_full() -> bool:
            return xray.stats().dropped > 0

    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=dead)))
        tracer = provider.get_tracer("bench")

        def bare_step(i: int) -> int:  # the same data, written by hand
            attrs = {
                xc.STEP_TYPE: "transform",
                xc.STEP_NAME: "bare_step",
                xc.RUN_ID: "0" * 32,
                xc.RUN_PIPELINE: "bench",
                xc.STEP_SEQ: i + 1,
            }
            with tracer.start_as_current_span("bare_step", attributes=attrs) as span:
                _work()
                span.set_attributes(
                    {xc.STEP_CANDIDATES_IN: 10, xc.STEP_CANDIDATES_OUT: 5, xc.STEP_WHY: "bench"}
                )
                return i

        def traced_pipeline() -> None:
            run_attrs = {xc.RUN_PIPELINE: "bench", xc.RUN_ID: "0" * 32, xc.RUN_ENTITY: "B000"}
            with tracer.start_as_current_span("bench", attributes=run_attrs):
                for i in range(PIPELINE_STEPS):
                    bare_step(i)

        rounds_done = [0]

        def queue_full() -> bool:
            rounds_done[0] += 1
            return rounds_done[0] > FILL_ROUNDS_BARE

    variants = (plain_pipeline, traced_pipeline)
    (fill_base, fill_traced), fill_rounds = _sample(variants, until=queue_full)
    (base, traced), _ = _sample(variants, rounds=PIPELINE_PAIRS)
    result = {
        "base_ms": base * 1e3,
        "traced_ms": traced * 1e3,
        "overhead_pct": _pct(traced, base),
        "fill_overhead_pct": _pct(fill_traced, fill_base),
        "fill_rounds": fill_rounds,
    }
    if tracing == "xray":
        stats = xray.stats()
        result.update(exported=stats.exported, failed=stats.failed, dropped=stats.dropped)
        started = time.perf_counter()
        xray.shutdown(timeout=2.0)
        result["shutdown_s"] = time.perf_counter() - started
    # The bare provider is not shut down: with a dead collector the stock
    # BatchSpanProcessor would wait out its exporter's retries. Its daemon thread just ends.
    return result


def bench_dead_collector() -> tuple[float, float]:
    """Return (X-Ray overhead %, bare-OpenTelemetry overhead %) against no tracing at all."""
    results = {}
    for tracing in ("xray", "otel"):
        child = subprocess.run(
            [sys.executable, __file__, "--dead-collector", tracing],
            capture_output=True, text=True, check=True,
        )
        results[tracing] = json.loads(child.stdout.strip().splitlines()[-1])
    xr, otel = results["xray"], results["otel"]
    print(
        f"pipeline ({PIPELINE_STEPS} steps x {WORK_S * 1e3:.0f} ms), collector down, median of "
        f"{PIPELINE_PAIRS}: {xr['base_ms']:.2f} -> {xr['traced_ms']:.2f} ms with X-Ray; "
        f"{otel['base_ms']:.2f} -> {otel['traced_ms']:.2f} ms with bare OpenTelemetry spans"
    )
    print(
        f"while the export queue filled ({xr['fill_rounds']} runs): X-Ray "
        f"{xr['fill_overhead_pct']:.1f}%, bare OpenTelemetry {otel['fill_overhead_pct']:.1f}%"
    )
    print(
        f"X-Ray stats: exported={xr['exported']} failed={xr['failed']} dropped={xr['dropped']}; "
        f"shutdown with a dead collector took {xr['shutdown_s']:.2f} s"
    )
    return xr["overhead_pct"], otel["overhead_pct"]


def _sample(
    variants: Sequence[Callable[[], None]],
    *,
    rounds: int = 5_000,
    until: Callable[[], bool] = lambda: False,
) -> tuple[list[float], int]:
    """The median time of each variant over alternating single runs (noise hits them all
    alike), for ``rounds`` rounds or until ``until()`` holds; and the rounds run."""
    samples: list[list[float]] = [[] for _ in variants]
    done = 0
    while done < rounds and not until():
        for k, variant in enumerate(variants):
            samples[k].append(_time(variant))
        done += 1
    return [statistics.median(v) if v else float("nan") for v in samples], done


def _pct(value: float, base: float) -> float:
    return (value - base) / base * 100


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--dead-collector":
        print(json.dumps(dead_collector_child(sys.argv[2])))
        return 0
    ratio = bench_step_cost()
    overhead, bare_overhead = bench_dead_collector()
    print(f"step_cost_ratio={ratio:.2f} (target <= 1.3)")
    print(f"dead_collector_overhead={overhead:.1f}% (target <= 5%)")
    print(f"reference: bare OpenTelemetry spans, same pipeline and collector: {bare_overhead:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
