"""Python cost of mapping, per span: OTLP protobuf bytes → step rows ready for ``COPY``.

What it measures
----------------
* ``parse_only`` (the baseline): ``ExportTraceServiceRequest.ParseFromString`` of the
  request bytes, which every path pays before any X-Ray work.
* ``map_to_rows``: the same parse, then everything the collector does in Python before
  the database sees a step: :func:`map_request` (contract attributes to columns,
  validation, adjustments), the artifact plan (which values are too big to keep inline),
  and the ``COPY`` row of each step.
* ``copy_text``: the binary ``COPY`` data of those rows as psycopg formats it
  (``copy.write_row``), the last Python step before the bytes go to Postgres.

Each is reported in µs per span (steps plus run spans), on two realistic batches of 512
spans: ``lean`` (the spans of ``benchmarks/ingest.py``: step name, type, seq, counts,
``why``, a ~100-byte ``why_json``, two metrics) and ``rich`` (the same plus a ~400-byte
``input`` and ``output`` JSON document and three extra attributes per step).

No database and no network: it isolates the per-span Python work that bounds one
collector process. Figures depend on the machine and on what else runs on it; compare
the mapping figure with the parse baseline of the same run.

Usage::

    python benchmarks/mapping.py [--batches N] [--repeat R]
    python benchmarks/mapping.py --profile lean|rich   # pyinstrument call tree instead
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from ingest import BATCH_SPANS, build_requests, generate_runs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from psycopg import postgres, pq
from psycopg._copy_base import BinaryFormatter  # what copy.write_row uses
from psycopg.adapt import AdaptersMap, Transformer

from collector_service.ingest.mapping import map_request
from collector_service.ingest.offload import OffloadPolicy, plan
from collector_service.store.steps import (  # the COPY row of a new step and its types
    _BYTES_DUMPER,
    _NEW_TYPES,
    _new_step_values,
)
from xray_otel import conventions as c

DEFAULT_BATCHES = 8
DEFAULT_REPEAT = 5
RECEIVED_AT = datetime(2026, 1, 1, tzinfo=UTC)
CEILING = OffloadPolicy().inline_ceiling
_COPY_OIDS = [postgres.types[name].oid for name in _NEW_TYPES]


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _document(seq: int, side: str) -> str:
    """A ~400-byte JSON document, the kind of ``input``/``output`` a step records."""
    items = [{"sku": f"SKU-{seq:03d}-{i:04d}", "score": round(0.91 - i * 0.037, 3),
              "title": f"item {i} of the {side}"} for i in range(6)]
    return json.dumps({"query": "wireless headphones", "side": side, "items": items},
                      separators=(",", ":"))


def enrich(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """``request`` with input, output and extra attributes on each step span."""
    rich = ExportTraceServiceRequest()
    rich.CopyFrom(request)
    for resource_spans in rich.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for seq, span in enumerate(scope_spans.spans):
                if not any(kv.key == c.STEP_TYPE for kv in span.attributes):
                    continue
                span.attributes.extend([
                    _kv(c.STEP_INPUT, _document(seq, "input")),
                    _kv(c.STEP_OUTPUT, _document(seq, "output")),
                    _kv("app.region", "eu-west-1"), _kv("app.model", "ranker-v3"),
                    _kv("app.tenant", f"tenant-{seq % 7}"),
                ])
    return rich


def map_to_rows(body: bytes) -> list[tuple[Any, ...]]:
    """Protobuf bytes to COPY rows, as the collector's ingest path does it (no I/O)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    batch = map_request(request, RECEIVED_AT)
    rows = []
    for step in batch.steps:
        if plan(step, CEILING):  # nothing offloads in these batches; the plan still runs
            raise AssertionError("a benchmark value crossed the inline ceiling")
        rows.append(_new_step_values(step))
    return rows


def parse_only(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def copy_text(rows: Sequence[tuple[Any, ...]]) -> int:
    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_dumper(bytes, _BYTES_DUMPER)  # as write_steps does on its cursor
    transformer = Transformer(adapters)
    transformer.set_dumper_types(_COPY_OIDS, pq.Format.BINARY)
    formatter = BinaryFormatter(transformer)
    size = sum(len(formatter.write_row(row)) for row in rows)
    return size + len(formatter.end())


def per_span_us(work: Callable[[Any], Any], inputs: Sequence[Any], spans: int,
                repeat: int) -> tuple[float, float, float]:
    """Median, min and max µs per span over ``repeat`` passes over ``inputs``."""
    figures = []
    for _ in range(repeat):
        started = time.perf_counter()
        for item in inputs:
            work(item)
        figures.append((time.perf_counter() - started) / spans * 1e6)
    return statistics.median(figures), min(figures), max(figures)


def _spans(requests: Sequence[ExportTraceServiceRequest]) -> int:
    return sum(len(ss.spans) for r in requests for rs in r.resource_spans
               for ss in rs.scope_spans)


def measure(name: str, requests: Sequence[ExportTraceServiceRequest], repeat: int) -> None:
    bodies = [r.SerializeToString() for r in requests]
    spans = _spans(requests)
    rows = [map_to_rows(body) for body in bodies]  # warm-up, and the input of copy_text
    parse = per_span_us(parse_only, bodies, spans, repeat)
    mapped = per_span_us(map_to_rows, bodies, spans, repeat)
    copied = per_span_us(copy_text, rows, spans, repeat)
    size = sum(map(len, bodies)) / spans
    print(f"{name}: {len(bodies)} requests, {spans} spans, {size:.0f} protobuf bytes/span")
    for label, (median, low, high) in (("parse_only (baseline)", parse),
                                       ("map_to_rows", mapped), ("copy_text", copied)):
        print(f"  {label:<22} {median:8.1f} µs/span  (range {low:.1f}-{high:.1f})")
    print(f"  map_to_rows / parse_only: {mapped[0] / parse[0]:.1f}x; "
          f"map_to_rows + copy_text: {mapped[0] + copied[0]:.1f} µs/span "
          f"≈ {1e6 / (mapped[0] + copied[0]):,.0f} spans/s on one core")


def profile(requests: Sequence[ExportTraceServiceRequest], repeat: int) -> None:
    """pyinstrument's call tree of ``repeat`` passes of mapping and COPY formatting."""
    from pyinstrument import Profiler  # the dev extra: only this mode needs it

    bodies = [r.SerializeToString() for r in requests]
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(repeat):
        for body in bodies:
            copy_text(map_to_rows(body))
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES,
                        help=f"requests of {BATCH_SPANS} spans per pass "
                             f"(default {DEFAULT_BATCHES})")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help=f"passes; the median is reported (default {DEFAULT_REPEAT})")
    parser.add_argument("--profile", choices=("lean", "rich"),
                        help="instead of timing, profile mapping that batch with pyinstrument "
                             "(the dev extra) and print the call tree")
    args = parser.parse_args(argv)
    requests = build_requests(generate_runs(args.batches * BATCH_SPANS * 10 // 11))
    if args.profile:
        profile([enrich(r) for r in requests] if args.profile == "rich" else requests,
                args.repeat)
        return 0
    print(f"Python {sys.version.split()[0]}; µs per span, median of {args.repeat} passes "
          "(a shared machine is noisy: compare figures of the same run)")
    measure("lean", requests, args.repeat)
    measure("rich", [enrich(r) for r in requests], args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
