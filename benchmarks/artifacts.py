"""Artifact throughput of the X-Ray collector into S3, next to plain ``put_object`` calls.

What it measures
----------------
* ``artifacts_via_collector_s3``: wall time for a running collector (``artifact_store="s3"``)
  to receive N step spans, each carrying one distinct payload of K KiB as
  ``xray.artifact.raw_response``, sent as OTLP/gRPC ``Export`` calls of 8 spans from 4
  concurrent senders. The collector acknowledges a request only after every payload in
  it is PUT to S3 and the step and ``xray_artifacts`` rows are committed, so when the
  last call returns all the work is done. MiB/s = payload bytes / wall time. Afterwards
  ``xray_artifacts`` must hold N rows stored in ``s3`` (none downgraded to a summary) and
  the bucket N objects under the collector's prefix.
* ``baseline_boto3_put_object``: the same payloads (already encoded) PUT with plain
  ``boto3`` ``put_object`` to the same S3 server, under another prefix of the same
  bucket, from 4 threads sharing one client (as the collector's worker threads do).
* ``artifacts_via_collector_local`` (reference, ``--no-local`` skips it): the first
  phase with the local-folder store, in a temporary directory. Each file is fsynced, so
  this one depends on the disk; it is not compared with the S3 figures.

How to read it
--------------
The S3 server is moto in server mode on 127.0.0.1: a real S3 HTTP API, but written in
Python and CPU-bound, so the absolute MiB/s say more about moto and this machine than
about S3. The point is the ratio: how much of what a plain client gets out of the same
server the collector delivers, with OTLP decoding, hashing, mapping and a Postgres
commit on top of each PUT. Moto runs in a child process so it does not share this
process's interpreter lock with the collector (the collector, its senders and the
baseline threads all run here, as in ``benchmarks/ingest.py``); on a 2-core machine the
two processes still compete for the cores.

Each round uses freshly generated payloads (so neither content addressing nor an
existing object can skip work; the S3 store always PUTs anyway), the phases alternate
order from round to round, and storage is emptied between phases outside the timing.
Medians over the rounds are reported with their range; the ratio is of the medians,
with the range of the per-round ratios.

The collector PUTs the payloads of one request one after another, so its concurrency
towards S3 is the number of requests in flight: here 4, as many as the baseline's
threads, as long as there are at least 4 requests (``--payloads`` >= 32). With fewer,
larger payloads the senders run out of requests and X-Ray gets less concurrency than
the baseline; that shows in the ratio and is a property of the collector, not noise.

Usage::

    python benchmarks/artifacts.py [--payloads N] [--size-kib K] [--database-url URL]
                                   [--repeat R] [--binary] [--no-local]

Payloads are JSON text like a search API's response (sent as OTLP string values, as
the Python SDK sends a dict or str), or random bytes with ``--binary``.

Database: ``--database-url``, else ``$XRAY_BENCH_DATABASE_URL``, else an embedded
PostgreSQL in a temporary directory. The URL needs the right to create databases; a
scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
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
from botocore.config import Config
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread
from xray_otel import conventions as c

DEFAULT_PAYLOADS = 200
DEFAULT_SIZE_KIB = 256
DEFAULT_REPEAT = 5
PAYLOADS_PER_REQUEST = 8
CONCURRENCY = 4
SEED = 20_240_601
EXPORT_TIMEOUT_S = 120.0
ENV_DATABASE_URL = "XRAY_BENCH_DATABASE_URL"

BUCKET = "xray-bench-artifacts"
COLLECTOR_PREFIX = "xray/artifacts/"
BASELINE_PREFIX = "baseline/"
ARTIFACT = c.artifact_attribute("raw_response")
PIPELINE = "competitor-search"
SERVICE_NAME = "bench-artifacts"
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
S3_CLIENT_CONFIG = Config(connect_timeout=10, read_timeout=10,
                          retries={"mode": "standard", "max_attempts": 2})
"""What ``S3ArtifactStore`` gives its client; the baseline client gets the same."""

WORDS = ("wireless", "noise", "cancelling", "headphones", "battery", "hours", "review",
         "price", "drop", "in", "stock", "ships", "free", "returns", "rating", "stars",
         "compare", "model", "2024", "edition", "bluetooth", "over-ear", "lightweight",
         "case", "warranty", "seller", "verified", "deal", "bundle", "charging", "usb-c")
ARTIFACT_NAME_RE = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")




# --- the workload ----------------------------------------------------------------------


def _result_pool(rng: random.Random, count: int = 512) -> list[str]:
    """Search results as compact JSON objects, ~300-400 bytes each (payloads draw from it)."""
    return [json.dumps({
        "rank": i + 1, "url": f"https://shop.example.com/p/{rng.getrandbits(48):012x}",
        "title": " ".join(rng.choices(WORDS, k=7)),
        "snippet": " ".join(rng.choices(WORDS, k=36)),
        "price": round(rng.uniform(20, 400), 2), "score": round(rng.random(), 4),
    }, separators=(",", ":")) for i in range(count)]


def json_payload(rng: random.Random, pool: Sequence[str], size: int, tag: str) -> str:
    """A search response of exactly ``size`` ASCII characters, unique through ``tag``."""
    head = f'{{"request_id":"{tag}","engine":"shop-search-v2","results":['
    tail = '],"padding":"'
    parts: list[str] = []
    length = len(head) + len(tail) + 2
    while True:
        item = rng.choice(pool)
        if length + len(item) + 1 > size:
            break
        parts.append(item)
        length += len(item) + 1
    body = head + ",".join(parts) + tail
    return body + "." * (size - len(body) - 2) + '"}'


def make_payloads(count: int, size: int, round_no: int, binary: bool) -> list[str | bytes]:
    """``count`` distinct payloads of ``size`` bytes, different in every round."""
    rng = random.Random(SEED + round_no)
    if binary:
        tags = [f"{round_no}:{i}:".encode() for i in range(count)]
        return [tag + rng.randbytes(size - len(tag)) for tag in tags]
    pool = _result_pool(rng)
    return [json_payload(rng, pool, size, f"r{round_no}-{i}-{rng.getrandbits(64):016x}")
            for i in range(count)]


def encoded(payload: str | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode()


def _kv(key: str, value: str | int | bytes) -> KeyValue:
    if isinstance(value, bytes):
        return KeyValue(key=key, value=AnyValue(bytes_value=value))
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def build_requests(payloads: Sequence[str | bytes], rng: random.Random
                   ) -> list[ExportTraceServiceRequest]:
    """One run (trace) per request of ``PAYLOADS_PER_REQUEST`` step spans, one payload each."""
    resource = Resource(attributes=[_kv(c.SERVICE_NAME, SERVICE_NAME)])
    scope = InstrumentationScope(name="xray_otel", version="0.1.0")
    requests: list[ExportTraceServiceRequest] = []
    for start in range(0, len(payloads), PAYLOADS_PER_REQUEST):
        trace_id = rng.randbytes(16)
        run_id = f"run-{trace_id[:8].hex()}"
        spans = [Span(
            trace_id=trace_id, span_id=rng.randbytes(7) + b"\x01", name="fetch_results",
            kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=1_717_200_000 * 10**9 + seq,
            end_time_unix_nano=1_717_200_001 * 10**9 + seq,
            attributes=[_kv(c.RUN_ID, run_id), _kv(c.RUN_PIPELINE, PIPELINE),
                        _kv(c.STEP_TYPE, "search"), _kv(c.STEP_NAME, "fetch_results"),
                        _kv(c.STEP_SEQ, seq), _kv(ARTIFACT, payload)])
            for seq, payload in enumerate(payloads[start: start + PAYLOADS_PER_REQUEST], 1)]
        requests.append(ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]))
    return requests


# --- S3 (moto) and databases -------------------------------------------------------------

_MOTO_CHILD = """
import logging
import sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()  # serve until the parent closes stdin (or exits)
server.stop()
"""


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Moto's S3 API on 127.0.0.1 in a child process; its endpoint URL. Stopped on exit."""
    child = subprocess.Popen([sys.executable, "-c", _MOTO_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        endpoint = child.stdout.readline().strip()
        if not endpoint.startswith("http://"):
            raise BenchmarkError(f"moto server did not start (exit code {child.poll()})")
        yield endpoint
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, config=S3_CLIENT_CONFIG)


def count_objects(client: Any, prefix: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def clear_prefix(client: Any, prefix: str) -> None:
    """Delete every object under ``prefix`` (keeps moto's memory flat across rounds)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    for page in pages:
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})












# --- the timed phases ------------------------------------------------------------------


def boto3_putter(client: Any, content_type: str
                 ) -> Callable[[], contextlib.AbstractContextManager[
                     Callable[[tuple[str, bytes]], None]]]:
    """A factory of plain ``put_object`` workers sharing ``client`` (boto3 clients are
    thread-safe), as the collector's worker threads share its store's client."""

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1], ContentType=content_type)

    return lambda: contextlib.nullcontext(put)


# --- verification ----------------------------------------------------------------------


def verify_collector(url: str, storage: str, expected: int, total_bytes: int) -> None:
    """Fail unless every payload has exactly one stored, non-downgraded artifact row."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE storage = %s AND NOT downgraded"
            " AND attribute = %s), count(*) FILTER (WHERE downgraded),"
            " count(DISTINCT artifact_id), coalesce(sum(size_bytes), 0),"
            " (SELECT count(*) FROM xray_steps) FROM xray_artifacts",
            (storage, ARTIFACT)).fetchone()
        reasons = conn.execute("SELECT DISTINCT downgrade_reason FROM xray_artifacts"
                               " WHERE downgraded LIMIT 5").fetchall()
    rows, stored, downgraded, distinct, size, steps = row or (0, 0, 0, 0, 0, 0)
    if downgraded:
        raise BenchmarkError(f"{downgraded} artifact(s) downgraded to a summary: "
                             f"{[r[0] for r in reasons]}")
    if (rows, stored, distinct, steps) != (expected,) * 4 or size != total_bytes:
        raise BenchmarkError(
            f"expected {expected} step rows and {expected} distinct artifacts stored in "
            f"{storage} ({total_bytes:,} bytes); found {steps} steps, {rows} artifact rows, "
            f"{stored} in {storage}, {distinct} distinct, {size:,} bytes")


def verify_objects(found: int, expected: int, where: str) -> None:
    if found != expected:
        raise BenchmarkError(f"{where} holds {found} objects; expected {expected}")


def count_local_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and ARTIFACT_NAME_RE.match(p.name))


# --- rounds ----------------------------------------------------------------------------


@dataclass
class Result:
    """One timed phase and the wall time of each of its rounds."""

    name: str
    total_bytes: int
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    def rate(self, seconds: float | None = None) -> float:
        """MiB/s for ``seconds`` (default: the median time)."""
        return self.total_bytes / 1024**2 / (seconds or self.seconds)

    def line(self) -> str:
        spread = ""
        if len(self.times) > 1:
            spread = (f" (median of {len(self.times)}: {min(self.times):.2f}-"
                      f"{max(self.times):.2f} s, {mib(self.rate(max(self.times)))}-"
                      f"{mib(self.rate(min(self.times)))} MiB/s)")
        return (f"{self.name}: {mib(self.total_bytes / 1024**2)} MiB in {self.seconds:.2f} s"
                f" = {mib(self.rate())} MiB/s{spread}")


def mib(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.3f}"


@dataclass
class Bench:
    """Everything a round needs: where things are, and the results so far."""

    url: str
    client: Any
    s3_port: int
    local_port: int | None
    local_dir: Path
    max_message: int
    content_type: str
    results: dict[str, Result]


def phase_collector_s3(bench: Bench, requests: Sequence[ExportTraceServiceRequest],
                       expected: int, total: int) -> float:
    reset_tables(bench.url)
    clear_prefix(bench.client, COLLECTOR_PREFIX)
    elapsed = timed_workers(requests, CONCURRENCY, grpc_exporter(
        bench.s3_port, bench.max_message, EXPORT_TIMEOUT_S))
    verify_collector(bench.url, "s3", expected, total)
    verify_objects(count_objects(bench.client, COLLECTOR_PREFIX), expected,
                   f"s3://{BUCKET}/{COLLECTOR_PREFIX}")
    clear_prefix(bench.client, COLLECTOR_PREFIX)
    return elapsed


def phase_baseline(bench: Bench, items: Sequence[tuple[str, bytes]]) -> float:
    clear_prefix(bench.client, BASELINE_PREFIX)
    elapsed = timed_workers(items, CONCURRENCY, boto3_putter(bench.client, bench.content_type))
    verify_objects(count_objects(bench.client, BASELINE_PREFIX), len(items),
                   f"s3://{BUCKET}/{BASELINE_PREFIX}")
    clear_prefix(bench.client, BASELINE_PREFIX)
    return elapsed


def phase_collector_local(bench: Bench, requests: Sequence[ExportTraceServiceRequest],
                          expected: int, total: int) -> float:
    assert bench.local_port is not None
    reset_tables(bench.url)
    shutil.rmtree(bench.local_dir, ignore_errors=True)
    elapsed = timed_workers(requests, CONCURRENCY, grpc_exporter(
        bench.local_port, bench.max_message, EXPORT_TIMEOUT_S))
    verify_collector(bench.url, "local", expected, total)
    verify_objects(count_local_files(bench.local_dir), expected, str(bench.local_dir))
    shutil.rmtree(bench.local_dir, ignore_errors=True)
    return elapsed


def run_round(bench: Bench, round_no: int, count: int, size: int, binary: bool) -> None:
    """Fresh payloads, then each phase once (order alternating by round), timed and checked."""
    payloads = make_payloads(count, size, round_no, binary)
    requests = build_requests(payloads, random.Random(SEED * 7 + round_no))
    bodies = [(f"{BASELINE_PREFIX}{round_no}/{i:06d}", encoded(p)) for i, p in enumerate(payloads)]
    total = sum(len(body) for _, body in bodies)
    del payloads  # the requests and bodies hold their own copies
    phases: list[tuple[str, Callable[[], float]]] = [
        ("artifacts_via_collector_s3",
         lambda: phase_collector_s3(bench, requests, count, total)),
        ("baseline_boto3_put_object", lambda: phase_baseline(bench, bodies)),
    ]
    if bench.local_port is not None:
        phases.append(("artifacts_via_collector_local",
                       lambda: phase_collector_local(bench, requests, count, total)))
    for name, phase in phases if round_no % 2 == 0 else reversed(phases):
        bench.results.setdefault(name, Result(name, total)).times.append(phase())


def warm_up(bench: Bench, size: int, binary: bool) -> None:
    """An untimed round of 2 requests per sender, so connections and pools are open."""
    count = CONCURRENCY * PAYLOADS_PER_REQUEST * 2
    payloads = make_payloads(count, min(size, 256 * 1024), -1, binary)
    requests = build_requests(payloads, random.Random(SEED - 1))
    total = sum(len(encoded(p)) for p in payloads)
    phase_collector_s3(bench, requests, count, total)
    phase_baseline(bench, [(f"{BASELINE_PREFIX}warm/{i}", encoded(p))
                           for i, p in enumerate(payloads)])
    if bench.local_port is not None:
        phase_collector_local(bench, requests, count, total)


# --- entry point -----------------------------------------------------------------------


def collector_config(url: str, data_dir: Path, size: int, **store: Any) -> CollectorConfig:
    """A collector on free ports whose limits let every request and payload through."""
    request_bytes = PAYLOADS_PER_REQUEST * (size + 1024)
    return CollectorConfig(
        database_url=url, data_dir=data_dir, grpc_port=0, http_port=0,
        max_request_bytes=max(64 * 1024**2, 2 * request_bytes),
        max_artifact_bytes=max(16 * 1024**2, size), **store)


def run_all(url: str, endpoint: str, tmp: Path, args: argparse.Namespace) -> dict[str, Result]:
    """Start the collectors (S3 and, unless skipped, local), warm up, run every round."""
    size = args.size_kib * 1024
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    local_dir = tmp / "local-artifacts"
    s3_config = collector_config(url, tmp / "collector-s3", size, artifact_store="s3",
                                 s3_bucket=BUCKET, s3_prefix=COLLECTOR_PREFIX,
                                 s3_endpoint_url=endpoint)
    with contextlib.ExitStack() as stack:
        s3_collector = stack.enter_context(CollectorThread(s3_config))
        local_port = None
        if not args.no_local:
            local_config = collector_config(url, tmp / "collector-local", size,
                                            artifact_store="local", artifact_dir=local_dir)
            local_port = stack.enter_context(CollectorThread(local_config)).grpc_port
        bench = Bench(url, client, s3_collector.grpc_port, local_port, local_dir,
                      s3_config.max_request_bytes,
                      "application/octet-stream" if args.binary else "application/json", {})
        warm_up(bench, size, args.binary)
        for round_no in range(args.repeat):
            run_round(bench, round_no, args.payloads, size, args.binary)
    return bench.results


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def print_summary(results: dict[str, Result], args: argparse.Namespace, endpoint: str,
                  postgres: str) -> None:
    kind = "random bytes" if args.binary else "JSON text"
    requests = -(-args.payloads // PAYLOADS_PER_REQUEST)
    print(f"s3: moto {_version('moto')} server in a child process at {endpoint}; "
          f"boto3 {_version('boto3')}")
    print(f"postgres: {postgres}")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"workload per round: {args.payloads} distinct payloads x {args.size_kib} KiB of "
          f"{kind}; X-Ray: {requests} OTLP/gRPC requests of up to {PAYLOADS_PER_REQUEST} "
          f"step spans from {CONCURRENCY} senders; baseline: put_object from {CONCURRENCY} "
          f"threads; {args.repeat} round(s)")
    for result in results.values():
        print(result.line())
    xray = results["artifacts_via_collector_s3"]
    base = results["baseline_boto3_put_object"]
    per_round = [b / x for x, b in zip(xray.times, base.times, strict=True)]
    spread = (f", per round {min(per_round):.0%}-{max(per_round):.0%}"
              if len(per_round) > 1 else "")
    print(f"ratio: {xray.rate() / base.rate():.0%} (X-Ray into S3 {mib(xray.rate())} MiB/s vs "
          f"plain put_object {mib(base.rate())} MiB/s{spread})")
    if "artifacts_via_collector_local" in results:
        print("(artifacts_via_collector_local is a reference: local folder, fsync per file)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payloads", type=int, default=DEFAULT_PAYLOADS,
                        help=f"distinct payloads per round (default {DEFAULT_PAYLOADS})")
    parser.add_argument("--size-kib", type=int, default=DEFAULT_SIZE_KIB,
                        help=f"size of each payload in KiB (default {DEFAULT_SIZE_KIB})")
    parser.add_argument("--database-url", default=os.environ.get(ENV_DATABASE_URL),
                        help=f"PostgreSQL server to use (default ${ENV_DATABASE_URL}, "
                             "else an embedded one); a scratch database is created on it")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help=f"rounds of every phase; medians are reported (default "
                             f"{DEFAULT_REPEAT})")
    parser.add_argument("--binary", action="store_true",
                        help="random bytes (OTLP bytes values) instead of JSON text")
    parser.add_argument("--no-local", action="store_true",
                        help="skip the reference phase with the local-folder store")
    args = parser.parse_args(argv)
    if args.payloads < 1 or args.repeat < 1 or args.size_kib < 1:
        parser.error("--payloads, --size-kib and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(FAKE_AWS_ENV)  # moto accepts any credentials; never use real ones here
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xray-bench-")))
            endpoint = stack.enter_context(moto_server())
            if args.database_url:
                server_url, where = args.database_url, server_description(args.database_url)
            else:
                server_url, where = stack.enter_context(embedded_server(tmp / "pg")), "embedded"
            url = stack.enter_context(scratch_database(server_url))
            postgres = f"PostgreSQL {server_version(url)} ({where})"
            results = run_all(url, endpoint, tmp, args)
    except BenchmarkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print_summary(results, args, endpoint, postgres)
    return 0


if __name__ == "__main__":
    sys.exit(main())
