"""Ingest throughput of the X-Ray collector, next to a raw ``COPY`` of the same rows.

What it measures
----------------
* ``ingest_grpc_4_senders`` / ``ingest_grpc_1_sender``: wall time for a running
  collector to receive and *commit* N X-Ray step spans plus one run span per run
  (about ten steps per run), sent as OTLP/gRPC ``Export`` calls of 512 spans from 4
  concurrent senders (several exporters) or from one. The collector acknowledges a
  request only after its transaction commits, so when the last call returns every
  span is in Postgres. The figure is spans/s = (step + run spans) / wall time, and
  afterwards ``xray_steps`` must hold exactly one row per step span sent.
* ``baseline_copy``: wall time of one ``COPY ... FROM STDIN`` plus commit of the same
  step rows (same columns and values, prepared beforehand) into ``bench_copy``, a table
  created ``LIKE xray_steps INCLUDING ALL`` (same constraints, indexes and generated
  columns). It is roughly the fastest these rows can get into that table; the script
  checks that ``bench_copy`` ends up holding exactly the rows the collector stored.

How to read it
--------------
The ratio compares the time each path needs to store the *same step rows*. The
collector additionally decodes protobuf, validates and maps each attribute in Python,
upserts ``xray_runs`` and commits once per request, so it cannot reach 100%; the
ratio says how much of the database's raw write capacity the collector turns into
ingest throughput. Everything (client, collector, database) shares this machine's
cores and the collector runs in this process (its own thread and event loop, with the
garbage collector settings ``xray collector`` applies at start), so the absolute numbers
depend on the machine: compare runs on the same host only.

The collector is warmed up (connections open) before timing, the tables are emptied
between phases, and the run uses a scratch database that is dropped at the end.

With ``--secure-compare`` the script instead measures what security costs: the same
load from 4 senders, in the same rounds, against two collectors on the same database,
one plain and one with TLS (a ``trustme`` certificate) and a bearer token on every
call; it prints both rates and their ratio.

Usage::

    python benchmarks/ingest.py [--spans N] [--database-url URL] [--repeat R]
    python benchmarks/ingest.py --secure-compare [--spans N] [--repeat R]
    python benchmarks/ingest.py --workers 1,2 [--spans N] [--repeat R]

With ``--workers`` the collector runs as ``xray collector --workers N`` subprocesses fed
by sender processes, and the script prints spans/s for each N beside the COPY baseline
and each worker's peak RSS; see ``ingest_workers.py``.

Each phase runs ``R`` times (default 3), interleaved; the median is reported with the
range, because one run of a few seconds on a shared machine is noisy.

Database: ``--database-url``, else ``$XRAY_BENCH_DATABASE_URL``, else an embedded
PostgreSQL in a temporary directory. The URL needs the right to create databases.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
from _bench_support import (
    BenchmarkError,
    embedded_server,
    grpc_exporter,
    reset_tables,
    scratch_database,
    server_description,
    server_version,
    timed_workers,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from psycopg import sql

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread, settle_garbage_collector
from collector_service.store.citus import is_citus
from xray_otel import conventions as c

DEFAULT_SPANS = 20_000
DEFAULT_REPEAT = 3
STEPS_PER_RUN = 10
BATCH_SPANS = 512
SENDER_COUNTS = (4, 1)
SEED = 20_240_601
EXPORT_TIMEOUT_S = 120.0
ENV_DATABASE_URL = "XRAY_BENCH_DATABASE_URL"

PIPELINE = "product-recommendations"
SERVICE_NAME = "bench-recommender"
STEP_PLAN: tuple[tuple[str, str], ...] = (
    ("retrieve_candidates", "search"),
    ("dedupe_variants", "filter"),
    ("filter_price_band", "filter"),
    ("filter_in_stock", "filter"),
    ("embed_query", "llm"),
    ("semantic_rerank", "rank"),
    ("filter_brand_safety", "filter"),
    ("llm_relevance_judge", "llm"),
    ("final_rank", "rank"),
    ("diversify", "rank"),
)
REASONS = ("below relevance threshold", "price outside band", "duplicate variant",
           "out of stock in region", "brand safety rule", "low judge score")

COPY_COLUMNS = (
    "run_id", "seq", "step_name", "step_type", "pipeline", "candidates_in", "candidates_out",
    "why", "why_json", "input", "output", "metrics", "status", "error", "started_at",
    "ended_at", "trace_id", "span_id", "parent_span_id", "attributes", "ingest_warnings",
)
"""Every ``xray_steps`` column the collector writes (not generated, not defaulted)."""




# --- the workload ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    """One step span, as logical values (both the OTLP span and the COPY row come from it)."""

    run_id: str
    seq: int
    name: str
    step_type: str
    candidates_in: int
    candidates_out: int
    why: str
    why_json: str
    metrics: dict[str, float]
    start_ns: int
    end_ns: int
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes


@dataclass(frozen=True)
class RunSpec:
    """One run: its run span's values and its steps."""

    run_id: str
    entity: str
    trace_id: bytes
    span_id: bytes
    start_ns: int
    end_ns: int
    steps: tuple[StepSpec, ...]


def _span_id(rng: random.Random) -> bytes:
    return rng.randbytes(7) + bytes([rng.randint(1, 255)])  # never all zero


def _explanation(rng: random.Random, seq: int, kept: int, seen: int) -> tuple[str, str]:
    """A ~60-character ``why`` and a ~100-byte ``why_json`` object."""
    reason = rng.choice(REASONS)
    threshold = round(rng.uniform(0.2, 0.9), 2)
    why = f"kept {kept} of {seen}: dropped {seen - kept}, {reason} ({threshold})"
    why_json = json.dumps({"rule": reason.replace(" ", "_"), "threshold": threshold,
                           "kept": kept, "dropped": seen - kept, "stage": seq,
                           "model": "ranker-v3"}, separators=(",", ":"))
    return why, why_json


def generate_runs(step_count: int, seed: int = SEED) -> list[RunSpec]:
    """``step_count`` steps in runs of ``STEPS_PER_RUN`` (the last run may be shorter)."""
    rng = random.Random(seed)
    runs: list[RunSpec] = []
    base_ns = 1_717_200_000 * 10**9
    for index in range(0, step_count, STEPS_PER_RUN):
        trace_id, run_span_id = rng.randbytes(16), _span_id(rng)
        run_id = f"run-{index // STEPS_PER_RUN:07d}-{trace_id[:4].hex()}"
        start_ns = clock_ns = base_ns + index * 5_000_000
        seen = rng.randint(800, 5000)
        steps: list[StepSpec] = []
        for seq, (name, step_type) in enumerate(STEP_PLAN[: step_count - index], start=1):
            kept = max(1, int(seen * rng.uniform(0.45, 0.98)))
            why, why_json = _explanation(rng, seq, kept, seen)
            duration_ns = rng.randint(2, 400) * 1_000_000
            steps.append(StepSpec(
                run_id=run_id, seq=seq, name=name, step_type=step_type, candidates_in=seen,
                candidates_out=kept, why=why, why_json=why_json,
                metrics={"latency_ms": duration_ns / 1e6, "score_mean": rng.random()},
                start_ns=clock_ns, end_ns=clock_ns + duration_ns, trace_id=trace_id,
                span_id=_span_id(rng), parent_span_id=run_span_id))
            clock_ns += duration_ns + rng.randint(0, 3) * 100_000
            seen = kept
        runs.append(RunSpec(run_id, f"B0{rng.randrange(10**8):08d}", trace_id, run_span_id,
                            start_ns, clock_ns, tuple(steps)))
    return runs


# --- OTLP requests and COPY rows, built before any timing ------------------------------


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def step_span(step: StepSpec) -> Span:
    """The OTLP span an X-Ray SDK would export for ``step``, its attributes in the SDK's
    order (``xray_otel``'s step opens with the type and name, then the run's)."""
    attributes = [
        _kv(c.STEP_TYPE, step.step_type), _kv(c.STEP_NAME, step.name),
        _kv(c.RUN_ID, step.run_id), _kv(c.RUN_PIPELINE, PIPELINE),
        _kv(c.STEP_SEQ, step.seq), _kv(c.STEP_CANDIDATES_IN, step.candidates_in),
        _kv(c.STEP_CANDIDATES_OUT, step.candidates_out), _kv(c.STEP_WHY, step.why),
        _kv(c.STEP_WHY_JSON, step.why_json),
        *(_kv(c.metric_attribute(name), value) for name, value in step.metrics.items()),
    ]
    return Span(trace_id=step.trace_id, span_id=step.span_id,
                parent_span_id=step.parent_span_id, name=step.name,
                kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=step.start_ns,
                end_time_unix_nano=step.end_ns, attributes=attributes)


def run_span(run: RunSpec) -> Span:
    """The OTLP run span: pipeline set, no step type."""
    attributes = [_kv(c.RUN_ID, run.run_id), _kv(c.RUN_PIPELINE, PIPELINE),
                  _kv(c.RUN_ENTITY, run.entity)]
    return Span(trace_id=run.trace_id, span_id=run.span_id, name=f"{PIPELINE}.run",
                kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=run.start_ns,
                end_time_unix_nano=run.end_ns, attributes=attributes)


def build_requests(runs: Sequence[RunSpec]) -> list[ExportTraceServiceRequest]:
    """Export requests of at most ``BATCH_SPANS`` spans: each run's steps, then its run span."""
    spans = [span for run in runs for span in (*map(step_span, run.steps), run_span(run))]
    resource = Resource(attributes=[_kv(c.SERVICE_NAME, SERVICE_NAME)])
    scope = InstrumentationScope(name="xray_otel", version="0.1.0")
    return [
        ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=resource,
            scope_spans=[ScopeSpans(scope=scope, spans=spans[i: i + BATCH_SPANS])])])
        for i in range(0, len(spans), BATCH_SPANS)
    ]


def _timestamp(unix_ns: int) -> datetime:
    return datetime.fromtimestamp(unix_ns // 1000 / 1_000_000, tz=UTC)


def copy_rows(runs: Sequence[RunSpec]) -> list[tuple[Any, ...]]:
    """The ``xray_steps`` rows the collector would store, in ``COPY_COLUMNS`` order."""
    return [
        (s.run_id, s.seq, s.name, s.step_type, PIPELINE, s.candidates_in, s.candidates_out,
         s.why, s.why_json, None, None, json.dumps(s.metrics, separators=(",", ":")), "ok",
         None, _timestamp(s.start_ns), _timestamp(s.end_ns), s.trace_id.hex(), s.span_id.hex(),
         s.parent_span_id.hex(), "{}", None)
        for run in runs for s in run.steps
    ]


# --- databases -------------------------------------------------------------------------












def verify_stored(url: str, steps: int, runs: int) -> None:
    """Fail unless the collector stored exactly one row per step span and per run."""
    with psycopg.connect(url) as conn:
        stored_steps = _count(conn, "SELECT count(*) FROM xray_steps")
        complete_runs = _count(conn, "SELECT count(*) FROM xray_runs WHERE span_id IS NOT NULL")
        no_pipeline = _count(conn, "SELECT count(*) FROM xray_steps WHERE pipeline IS NULL")
    if stored_steps != steps:
        raise BenchmarkError(f"xray_steps holds {stored_steps:,} rows; {steps:,} step spans sent")
    if complete_runs != runs:
        raise BenchmarkError(f"xray_runs holds {complete_runs:,} runs from run spans; "
                             f"{runs:,} run spans sent")
    if no_pipeline:
        raise BenchmarkError(f"{no_pipeline:,} stored steps have no pipeline")


def verify_same_rows(url: str) -> None:
    """Fail unless ``bench_copy`` holds exactly the rows the collector stored in ``xray_steps``."""
    columns = sql.SQL(", ").join(map(sql.Identifier, (*COPY_COLUMNS, "drop_ratio",
                                                      "duration_ms")))
    query = sql.SQL("SELECT count(*) FROM ((SELECT {c} FROM xray_steps EXCEPT ALL "
                    "SELECT {c} FROM bench_copy) UNION ALL (SELECT {c} FROM bench_copy "
                    "EXCEPT ALL SELECT {c} FROM xray_steps)) AS diff").format(c=columns)
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    if row is None or row[0]:
        raise BenchmarkError(f"the COPY baseline differs from the collector's rows in "
                             f"{row[0] if row else '?'} row(s): it is not the same data")


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


# --- the timed phases ------------------------------------------------------------------




def send_all(port: int, requests: Sequence[ExportTraceServiceRequest], senders: int) -> float:
    """Export every request from ``senders`` threads; the wall time until all are committed.

    The finish time is taken when the last ``Export`` returned, before the channels are
    closed (closing a channel takes about 0.2 s and is not ingest time).
    """
    return timed_workers(requests, senders, grpc_exporter(port, export_timeout_s=EXPORT_TIMEOUT_S))


def fresh_copy_table(conn: psycopg.Connection[Any]) -> sql.Composed:
    """(Re)create ``bench_copy`` like ``xray_steps`` (same constraints, indexes and
    generated columns); return the ``COPY`` statement of ``COPY_COLUMNS`` into it."""
    conn.execute("DROP TABLE IF EXISTS bench_copy")
    conn.execute("CREATE TABLE bench_copy (LIKE xray_steps INCLUDING ALL)")
    if is_citus(conn):  # distributed like xray_steps, so COPY is routed the same way
        conn.execute("SELECT create_distributed_table('bench_copy', 'run_id',"
                     " colocate_with => 'xray_steps')")
    columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
    return sql.SQL("COPY bench_copy ({}) FROM STDIN").format(columns)


def time_copy(url: str, rows: Sequence[tuple[Any, ...]]) -> float:
    """Wall time of ``COPY`` + commit of ``rows`` into a fresh ``bench_copy`` table."""
    with psycopg.connect(url, autocommit=True) as conn:
        statement = fresh_copy_table(conn)
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
        conn.autocommit = False
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - began
        stored = _count(conn, "SELECT count(*) FROM bench_copy")
    if stored != len(rows):
        raise BenchmarkError(f"bench_copy holds {stored:,} rows; {len(rows):,} copied")
    return elapsed


@dataclass
class Result:
    """One timed phase and the wall time of each of its repetitions."""

    name: str
    items: int
    unit: str
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def line(self) -> str:
        spread = (f" (median of {len(self.times)}: {min(self.times):.2f}-{max(self.times):.2f} s)"
                  if len(self.times) > 1 else "")
        return (f"{self.name}: {self.items:,} {self.unit} in {self.seconds:.2f} s"
                f" = {self.rate:,.0f} {self.unit}/s{spread}")


def run_phases(url: str, data_dir: Path, runs: Sequence[RunSpec], repeat: int) -> list[Result]:
    """Warm the collector up, then ``repeat`` rounds of: each sender count, the COPY baseline.

    Interleaving the phases in every round spreads the machine's noise over all of them.
    """
    requests, rows = build_requests(runs), copy_rows(runs)
    warmup = build_requests(generate_runs(STEPS_PER_RUN * 4 * max(SENDER_COUNTS), SEED + 1))
    grpc_results = {senders: Result(f"ingest_grpc_{senders}_sender{'s' if senders > 1 else ''}",
                                    len(rows) + len(runs), "spans") for senders in SENDER_COUNTS}
    copy = Result("baseline_copy", len(rows), "rows")
    config = CollectorConfig(database_url=url, data_dir=data_dir, grpc_port=0, http_port=0)
    with CollectorThread(config) as endpoints:
        settle_garbage_collector()  # as `xray collector` does once started
        send_all(endpoints.grpc_port, warmup, max(SENDER_COUNTS))  # opens pool connections
        for _ in range(repeat):
            for senders, result in grpc_results.items():
                reset_tables(url)
                result.times.append(send_all(endpoints.grpc_port, requests, senders))
                verify_stored(url, len(rows), len(runs))
            copy.times.append(time_copy(url, rows))
    verify_same_rows(url)
    return [*grpc_results.values(), copy]


def run_workers(url: str, data_dir: Path, runs: Sequence[RunSpec], repeat: int,
                counts: Sequence[int]) -> tuple[list[Result], dict[int, Any]]:
    """``xray collector --workers N`` for each count, and the COPY baseline, interleaved."""
    from ingest_workers import CpuShares, run_worker_phases

    requests = [r.SerializeToString() for r in build_requests(runs)]
    rows = copy_rows(runs)
    warmup = [r.SerializeToString() for r in build_requests(
        generate_runs(STEPS_PER_RUN * 4 * max(SENDER_COUNTS), SEED + 1))]
    steps = sum(len(run.steps) for run in runs)
    timed: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, CpuShares] = {}
    copy = Result("baseline_copy", len(rows), "rows")
    rss = run_worker_phases(
        url, data_dir, counts, requests, warmup, repeat, timed,
        copy_round=lambda: copy.times.append(time_copy(url, rows)),
        verify=lambda: verify_stored(url, steps, len(runs)), cpu=cpu)
    verify_same_rows(url)
    results = [Result(f"ingest_grpc_workers_{n}", steps + len(runs), "spans", timed[n])
               for n in counts]
    spans = steps + len(runs)
    for n, shares in cpu.items():
        per_span = sorted(s / spans * 1e6 for s in shares.collector)
        print(f"collector CPU, --workers {n}: {statistics.median(per_span):.1f} µs per span "
              f"(all workers, user + system; rounds {per_span[0]:.1f}-{per_span[-1]:.1f})")
        print(f"CPU per span, --workers {n} (medians of the rounds): collector "
              f"{statistics.median(shares.collector) / spans * 1e6:.1f} µs, PostgreSQL "
              f"{statistics.median(shares.postgres) / spans * 1e6:.1f} µs, senders "
              f"{statistics.median(shares.senders) / spans * 1e6:.1f} µs; machine busy "
              f"{statistics.median(shares.busy):.0%} of {os.cpu_count()} cores")
    return [*results, copy], rss


def print_workers_summary(results: Sequence[Result], rss: dict[int, Any]) -> None:
    by_workers = {int(r.name.rsplit("_", 1)[1]): r for r in results if r.unit == "spans"}
    one = by_workers.get(1)
    for n, result in by_workers.items():
        if one is not None and n > 1:
            print(f"scaling: {n} workers reach {result.rate / one.rate:.2f}x one worker")
    for n, (workers, supervisor) in rss.items():
        peaks = ", ".join(f"{mib:.0f}" for mib in workers)
        extra = f"; supervisor {supervisor:.0f} MiB" if supervisor is not None else ""
        print(f"peak RSS under load, --workers {n}: {peaks} MiB per worker{extra}")


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use counts like 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be at least 1")
    return counts


SECURE_TOKEN = "bench-token-0123456789abcdef"


def run_secure_compare(url: str, data_dir: Path, runs: Sequence[RunSpec],
                       repeat: int) -> list[Result]:
    """The same load against a plain collector and a TLS+token one, interleaved per round."""
    import trustme  # a test dependency: only this mode needs it

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    data_dir.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = data_dir / "server.pem", data_dir / "server.key"
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(cert_file), append=True)
    server.private_key_pem.write_to_path(str(key_file))
    requests = build_requests(runs)
    steps = sum(len(run.steps) for run in runs)
    senders = max(SENDER_COUNTS)
    plain = Result(f"ingest_grpc_{senders}_senders_plain", steps + len(runs), "spans")
    secure = Result(f"ingest_grpc_{senders}_senders_tls_token", steps + len(runs), "spans")
    plain_config = CollectorConfig(database_url=url, data_dir=data_dir / "plain",
                                   grpc_port=0, http_port=0)
    secure_config = CollectorConfig(database_url=url, data_dir=data_dir / "secure",
                                    grpc_port=0, http_port=0, auth_tokens=(SECURE_TOKEN,),
                                    tls_cert_file=cert_file, tls_key_file=key_file)
    warmup = build_requests(generate_runs(STEPS_PER_RUN * 4 * senders, SEED + 1))
    with CollectorThread(plain_config) as plain_at, CollectorThread(secure_config) as secure_at:
        settle_garbage_collector()  # as `xray collector` does once started
        senders_for = {
            plain.name: grpc_exporter(plain_at.grpc_port, export_timeout_s=EXPORT_TIMEOUT_S),
            secure.name: grpc_exporter(
                secure_at.grpc_port, export_timeout_s=EXPORT_TIMEOUT_S,
                credentials=grpc.ssl_channel_credentials(ca.cert_pem.bytes()),
                metadata=(("authorization", f"Bearer {SECURE_TOKEN}"),)),
        }
        for open_sender in senders_for.values():
            timed_workers(warmup, senders, open_sender)
        for round_ in range(repeat):  # alternate which goes first, against drift
            for result in ((plain, secure) if round_ % 2 == 0 else (secure, plain)):
                reset_tables(url)
                result.times.append(timed_workers(requests, senders, senders_for[result.name]))
                verify_stored(url, steps, len(runs))
    return [plain, secure]


def print_secure_summary(results: Sequence[Result], version: str, where: str) -> None:
    plain, secure = results
    print(f"postgres: {version} ({where})")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"workload: {plain.items:,} spans in OTLP/gRPC requests of up to {BATCH_SPANS} "
          "spans; TLS: server certificate, TLS 1.2+; token: one static bearer token")
    for result in results:
        print(result.line())
    print(f"ratio: with TLS and a token the collector reaches {secure.rate / plain.rate:.0%} "
          f"of its plain rate ({secure.rate:,.0f} vs {plain.rate:,.0f} spans/s)")


# --- entry point -----------------------------------------------------------------------


def print_summary(results: Sequence[Result], runs: Sequence[RunSpec], version: str,
                  where: str) -> None:
    steps = sum(len(run.steps) for run in runs)
    requests = -(-(steps + len(runs)) // BATCH_SPANS)
    print(f"postgres: {version} ({where})")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"workload: {steps:,} step spans + {len(runs):,} run spans, {requests} OTLP/gRPC "
          f"requests of up to {BATCH_SPANS} spans")
    for result in results:
        print(result.line())
    copy = next(r for r in results if r.unit == "rows")
    for result in results:
        if result.unit == "spans":  # same step rows in both: compare the times
            share = copy.seconds / result.seconds
            print(f"ratio: X-Ray ({result.name}) reaches {share:.0%} of raw COPY "
                  f"({steps / result.seconds:,.0f} vs {copy.rate:,.0f} step rows/s)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=DEFAULT_SPANS,
                        help=f"step spans to send (default {DEFAULT_SPANS:,}); "
                             f"one run span is added per {STEPS_PER_RUN} steps")
    parser.add_argument("--database-url", default=os.environ.get(ENV_DATABASE_URL),
                        help=f"PostgreSQL server to use (default ${ENV_DATABASE_URL}, "
                             "else an embedded one); a scratch database is created on it")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help=f"rounds of every phase; medians are reported (default "
                             f"{DEFAULT_REPEAT})")
    parser.add_argument("--workers", type=_worker_counts, metavar="N,M",
                        help="instead of the in-process collector, time `xray collector "
                             "--workers N` subprocesses for each count, e.g. 1,2")
    parser.add_argument("--secure-compare", action="store_true",
                        help="time the same load with TLS and a bearer token on beside off, "
                             "instead of the usual phases")
    args = parser.parse_args(argv)
    if args.spans < 1 or args.repeat < 1:
        parser.error("--spans and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = generate_runs(args.spans)
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xray-bench-")))
            if args.database_url:
                server_url, where = args.database_url, server_description(args.database_url)
            else:
                server_url, where = stack.enter_context(embedded_server(tmp / "pg")), "embedded"
            url = stack.enter_context(scratch_database(server_url))
            version = server_version(url)
            if args.workers:
                results, rss = run_workers(url, tmp / "collector", runs, args.repeat,
                                           args.workers)
            elif args.secure_compare:
                results = run_secure_compare(url, tmp / "collector", runs, args.repeat)
            else:
                results = run_phases(url, tmp / "collector", runs, args.repeat)
    except BenchmarkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if args.secure_compare:
        print_secure_summary(results, version, where)
    else:
        print_summary(results, runs, version, where)
    if args.workers:
        print_workers_summary(results, rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
