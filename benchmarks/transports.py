"""Ingest throughput of one collector per OTLP transport: gRPC, HTTP protobuf (plain and
gzip) and HTTP JSON, on the same load; plus what decoding OTLP/JSON alone costs.

What it measures
----------------
* ``grpc``, ``http_protobuf``, ``http_protobuf_gzip``, ``http_json``: wall time for a
  running collector to receive and *commit* N X-Ray step spans plus one run span per
  run (the same spans ``benchmarks/ingest.py`` sends), in export requests of 512 spans
  from 4 concurrent senders, each with its own connection. The collector acknowledges
  only after its transaction commits, so when the last call returns every span is in
  Postgres; afterwards ``xray_steps`` and ``xray_runs`` must hold exactly one row per
  step and per run sent. The figure is spans/s, and each transport's ratio to gRPC.
  Request bodies are encoded before timing; HTTP senders keep their connection open.
* ``http_json_parsedict``: the JSON phase again with the collector decoding through
  protobuf's ``json_format.ParseDict``, as it did before its own OTLP/JSON decoder.
* ``decode``: CPU time per span to turn one OTLP/JSON request body into an
  ``ExportTraceServiceRequest``, with the collector's decoder beside protobuf's
  ``json_format.ParseDict`` (after the hex ids are made base64, as it needs) and beside
  binary protobuf's ``ParseFromString``: best of several passes over every request.

How to read it
--------------
The phases run interleaved, ``R`` rounds (median reported, with the range), so the
machine's noise spreads over all of them; the tables are emptied between phases. The
collector runs in this process (its own thread and event loop, with the garbage
collector settings ``xray collector`` applies at start: ``server.settle_garbage_collector``)
and shares the cores with the senders and Postgres: compare figures from one run, not
across machines.

Usage::

    python benchmarks/transports.py [--spans N] [--repeat R] [--database-url URL]

Database: ``--database-url``, else ``$XRAY_BENCH_DATABASE_URL``, else an embedded
PostgreSQL in a temporary directory. The URL needs the right to create databases.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _bench_support import (
    BenchmarkError,
    check_response,
    embedded_server,
    grpc_exporter,
    reset_tables,
    scratch_database,
    server_description,
    server_version,
    timed_workers,
)
from google.protobuf import json_format
from ingest import build_requests, generate_runs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector_service.config import CollectorConfig
from collector_service.ingest import pipeline
from collector_service.ingest.decode import decode_json
from collector_service.server import CollectorThread, settle_garbage_collector

DEFAULT_SPANS = 20_000
DEFAULT_REPEAT = 5
SENDERS = 4
EXPORT_TIMEOUT_S = 120.0
ENV_DATABASE_URL = "XRAY_BENCH_DATABASE_URL"
HEX_IDS = ("traceId", "spanId", "parentSpanId")
PROTOBUF, JSON = "application/x-protobuf", "application/json"
PARSE_DICT = "json, json_format.ParseDict"
COLLECTOR = "json, collector decoder"
BEFORE = "http_json_parsedict"
"""The JSON phase again, with the collector decoding through ``ParseDict`` as it used to."""


# --- request bodies, encoded before timing -----------------------------------------------


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """``request`` as OTLP/JSON, the way OpenTelemetry's JSON exporters write it: the
    protobuf JSON mapping with hex trace and span ids and enums as integers."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    _rewrite_ids(document, lambda text: base64.b64decode(text).hex())
    return json.dumps(document, separators=(",", ":")).encode()


def _rewrite_ids(node: Any, rewrite: Callable[[str], str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HEX_IDS and isinstance(value, str):
                node[key] = rewrite(value)
            else:
                _rewrite_ids(value, rewrite)
    elif isinstance(node, list):
        for item in node:
            _rewrite_ids(item, rewrite)


def parse_dict(body: bytes) -> ExportTraceServiceRequest:
    """The OTLP/JSON decoding the collector used before: protobuf's ``ParseDict`` after
    the hex ids are made base64 (the "before" figures)."""
    document = json.loads(body)
    _rewrite_ids(document, lambda text: base64.b64encode(bytes.fromhex(text)).decode())
    request = ExportTraceServiceRequest()
    json_format.ParseDict(document, request, ignore_unknown_fields=True)
    return request


@contextlib.contextmanager
def collector_json_decoder(decode: Callable[[bytes], ExportTraceServiceRequest]
                           ) -> Iterator[list[int]]:
    """Have the in-process collector decode OTLP/JSON with ``decode`` for a while; yields
    a one-item list counting the bodies it decoded (0: the swap did not take)."""
    namespace = vars(pipeline)  # the name the ingest path calls the decoder by
    calls = [0]
    if "decode_json" not in namespace:
        yield calls
        return

    def counted(payload: bytes) -> ExportTraceServiceRequest:
        calls[0] += 1
        return decode(payload)

    original = namespace["decode_json"]
    namespace["decode_json"] = counted
    try:
        yield calls
    finally:
        namespace["decode_json"] = original


@dataclass(frozen=True)
class HttpBody:
    """One OTLP/HTTP request, ready to send."""

    payload: bytes
    content_type: str
    encoding: str | None


def http_bodies(requests: Sequence[ExportTraceServiceRequest], form: str) -> list[HttpBody]:
    if form == "json":
        return [HttpBody(otlp_json(r), JSON, None) for r in requests]
    wire = [r.SerializeToString() for r in requests]
    if form == "gzip":
        return [HttpBody(gzip.compress(w, compresslevel=6), PROTOBUF, "gzip") for w in wire]
    return [HttpBody(w, PROTOBUF, None) for w in wire]


def http_exporter(port: int) -> Callable[[], contextlib.AbstractContextManager[
        Callable[[HttpBody], None]]]:
    """A factory of OTLP/HTTP senders, each keeping one connection open."""

    @contextlib.contextmanager
    def open_sender() -> Iterator[Callable[[HttpBody], None]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=EXPORT_TIMEOUT_S)
        connection.connect()

        def send(body: HttpBody) -> None:
            headers = {"Content-Type": body.content_type}
            if body.encoding:
                headers["Content-Encoding"] = body.encoding
            connection.request("POST", "/v1/traces", body=body.payload, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise BenchmarkError(f"HTTP {response.status}: {answer[:300]!r}")
            decoded = ExportTraceServiceResponse()
            if body.content_type == JSON:
                json_format.Parse(answer, decoded)
            else:
                decoded.ParseFromString(answer)
            check_response(decoded)

        try:
            yield send
        finally:
            connection.close()

    return open_sender


# --- the timed phases --------------------------------------------------------------------


@dataclass
class Result:
    """One transport and the wall time of each of its rounds."""

    name: str
    spans: int
    times: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.spans / statistics.median(self.times)

    def line(self, baseline: Result) -> str:
        spread = (f" (median of {len(self.times)}: {min(self.times):.2f}-"
                  f"{max(self.times):.2f} s)" if len(self.times) > 1 else "")
        return (f"{self.name:>20}: {self.spans:,} spans in {statistics.median(self.times):.2f} s"
                f" = {self.rate:,.0f} spans/s, {self.rate / baseline.rate:.2f}x gRPC{spread}")


def verify_stored(url: str, steps: int, runs: int) -> None:
    """Fail unless the collector stored exactly one row per step span and per run span."""
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM xray_steps),"
            " (SELECT count(*) FROM xray_runs WHERE span_id IS NOT NULL)").fetchone()
    if stored is None or tuple(stored) != (steps, runs):
        raise BenchmarkError(f"stored (steps, runs) = {stored}; sent ({steps}, {runs})")


FORMS: dict[str, str | None] = {"grpc": None, "http_protobuf": "protobuf",
                                "http_protobuf_gzip": "gzip", "http_json": "json",
                                BEFORE: "json"}
"""Each phase and the HTTP body form it sends (gRPC sends the request messages)."""


def loads(requests: Sequence[ExportTraceServiceRequest]) -> dict[str, Sequence[Any]]:
    return {name: requests if form is None else http_bodies(requests, form)
            for name, form in FORMS.items()}


def run_phases(url: str, data_dir: Path, spans: int, repeat: int) -> list[Result]:
    """Warm up every transport, then ``repeat`` rounds of all of them, interleaved."""
    runs = generate_runs(spans)
    steps = sum(len(run.steps) for run in runs)
    work, warmup = loads(build_requests(runs)), loads(build_requests(generate_runs(160, 7)))
    results = {name: Result(name, steps + len(runs)) for name in FORMS}
    config = CollectorConfig(database_url=url, data_dir=data_dir, grpc_port=0, http_port=0)
    with CollectorThread(config) as endpoints:
        settle_garbage_collector()  # as `xray collector` does once started
        openers: dict[str, Callable[[], Any]] = {
            name: http_exporter(endpoints.http_port) for name in FORMS}
        openers["grpc"] = grpc_exporter(endpoints.grpc_port, export_timeout_s=EXPORT_TIMEOUT_S)
        for name, opener in openers.items():  # connections, pools and code paths warm
            timed_workers(warmup[name], SENDERS, opener)
        for round_ in range(repeat):  # alternate the order, against drift
            for name in list(FORMS) if round_ % 2 == 0 else list(reversed(FORMS)):
                if name not in results:
                    continue
                reset_tables(url)
                if name != BEFORE:
                    elapsed = timed_workers(work[name], SENDERS, openers[name])
                else:
                    with collector_json_decoder(parse_dict) as calls:
                        elapsed = timed_workers(work[name], SENDERS, openers[name])
                    if not calls[0]:  # e.g. the collector decodes in other processes
                        print(f"note: {BEFORE} not measured: the collector's JSON decoder "
                              "could not be swapped in this process")
                        del results[BEFORE]
                        continue
                results[name].times.append(elapsed)
                verify_stored(url, steps, len(runs))
    return list(results.values())


def decode_costs(spans: int, passes: int = 3) -> dict[str, float]:
    """Best-of-``passes`` CPU microseconds per span to decode every request body."""
    requests = build_requests(generate_runs(spans))
    count = sum(len(s.spans) for r in requests for rs in r.resource_spans
                for s in rs.scope_spans)
    bodies = [otlp_json(r) for r in requests]
    wire = [r.SerializeToString() for r in requests]

    if any(decode_json(b) != parse_dict(b) for b in bodies[:2]):
        raise BenchmarkError("the JSON decoders disagree on the benchmark's own requests")
    decoders: dict[str, tuple[Callable[[bytes], Any], list[bytes]]] = {
        COLLECTOR: (decode_json, bodies),
        PARSE_DICT: (parse_dict, bodies),
        "protobuf, ParseFromString": (ExportTraceServiceRequest.FromString, wire),
    }
    costs = {}
    for name, (decode, payloads) in decoders.items():
        best = min(_cpu_seconds(decode, payloads) for _ in range(passes))
        costs[name] = best / count * 1e6
    return costs


def _cpu_seconds(decode: Callable[[bytes], Any], payloads: Sequence[bytes]) -> float:
    began = time.process_time()
    for payload in payloads:
        decode(payload)
    return time.process_time() - began


# --- entry point -------------------------------------------------------------------------


def print_summary(results: Sequence[Result], costs: dict[str, float], version: str,
                  where: str, spans: int) -> None:
    print(f"postgres: {version} ({where})")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"workload: {results[0].spans:,} spans ({spans:,} steps + their run spans) in "
          f"requests of up to 512 spans from {SENDERS} senders, per transport")
    grpc = results[0]
    for result in results:
        print(result.line(grpc))
    print("decode only, CPU per span (same JSON bodies; binary protobuf for reference):")
    baseline = costs[PARSE_DICT]
    for name, micros in costs.items():
        versus = f" ({baseline / micros:.1f}x faster than ParseDict)" if name == COLLECTOR else ""
        print(f"{name:>30}: {micros:6.1f} us/span{versus}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=DEFAULT_SPANS,
                        help=f"step spans per phase (default {DEFAULT_SPANS:,}); one run "
                             "span is added per 10 steps")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help=f"rounds of every phase; medians are reported (default "
                             f"{DEFAULT_REPEAT})")
    parser.add_argument("--database-url", default=os.environ.get(ENV_DATABASE_URL),
                        help=f"PostgreSQL server to use (default ${ENV_DATABASE_URL}, else "
                             "an embedded one); a scratch database is created on it")
    args = parser.parse_args(argv)
    if args.spans < 1 or args.repeat < 1:
        parser.error("--spans and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        costs = decode_costs(min(args.spans, 5_000))
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xray-bench-")))
            if args.database_url:
                server_url, where = args.database_url, server_description(args.database_url)
            else:
                server_url, where = stack.enter_context(embedded_server(tmp / "pg")), "embedded"
            url = stack.enter_context(scratch_database(server_url))
            version = server_version(url)
            results = run_phases(url, tmp / "collector", args.spans, args.repeat)
    except BenchmarkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print_summary(results, costs, version, where, args.spans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
