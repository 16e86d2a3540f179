"""How the collector answers while PostgreSQL is down, and how fast it recovers.

What it measures
----------------
A PostgreSQL cluster of its own (``initdb``/``pg_ctl`` on a free loopback port) and
``xray collector`` as a subprocess, as the reliability tests run them; the database is
stopped with ``pg_ctl stop -m fast`` and started again.

* ``refusal``: latency of N OTLP/gRPC ``Export`` calls of one step span while the
  database is down and the spool is disabled (``--spool-max-bytes 0``), with the status
  each got (a 15 s client deadline). Baseline: the same call with an empty request while
  the database is up, a gRPC round trip that does no storage work.
* ``readyz``: latency of ``GET /readyz`` during that outage; baseline ``GET /healthz``.
* ``recovery``: from ``pg_ctl start`` returning to the first ``Export`` that succeeds,
  with calls sent back to back (each outage lasts ``--outage`` seconds; median of R).
* ``spool``: step spans acknowledged per second by 4 senders (100-span requests) during
  an outage with the spool on (the default); baseline: the same load with the database
  up. Then ``replay``: the time, after the database is back, until every spooled span
  is in ``xray_steps``.

Everything shares this machine's cores; compare runs on the same host only.

Usage::

    python benchmarks/faults.py [--calls N] [--repeat R] [--outage S] [--load-seconds S]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

# The reliability tests' harness: the same cluster and collector process, measured.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fix_collector_process import CollectorProcess
from tests.fix_pg_instance import PostgresInstance
from tests.reliability.load import (
    Ledger,
    Sender,
    http_get,
    new_batch,
    run_senders,
    stop_senders,
    stored_keys,
)

_DEADLINE_S = 15.0
_PHASE_LIMIT_S = 60.0
"""A phase stops early after this long (a collector that waits on the database is slow)."""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(latencies: list[float]) -> str:
    """Median and p99 of ``latencies``."""
    if not latencies:
        return "no samples"
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
    return f"median {ms(statistics.median(latencies))}, p99 {ms(p99)} (n={len(latencies)})"


def sample(call: Callable[[], str], count: int) -> tuple[list[float], Counter[str]]:
    """Time ``count`` calls (fewer if the phase runs past its limit); count outcomes."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    give_up = time.monotonic() + _PHASE_LIMIT_S
    for _ in range(count):
        began = time.perf_counter()
        outcomes[call()] += 1
        latencies.append(time.perf_counter() - began)
        if time.monotonic() > give_up:
            break
    return latencies, outcomes


def exporting(stub: TraceServiceStub, batch: ExportTraceServiceRequest) -> Callable[[], str]:
    def call() -> str:
        try:
            stub.Export(batch, timeout=_DEADLINE_S)
            return "OK"
        except grpc.RpcError as exc:
            return str(exc.code().name)

    return call


def getting(url: str) -> Callable[[], str]:
    return lambda: str(http_get(url, timeout_s=_DEADLINE_S)[0] or "timed out")


@contextmanager
def collector(pg: PostgresInstance, folder: Path, *flags: str) -> Iterator[CollectorProcess]:
    process = CollectorProcess(pg.url, folder, flags).start()
    try:
        yield process
    finally:
        process.kill()


def refusals(pg: PostgresInstance, folder: Path, args: argparse.Namespace) -> None:
    with (collector(pg, folder / "no-spool", "--spool-max-bytes", "0") as process,
          grpc.insecure_channel(process.grpc_target) as channel):
        stub = TraceServiceStub(channel)
        one_span = new_batch(1)[0]
        exporting(stub, one_span)()  # connections open before timing
        base, _ = sample(exporting(stub, ExportTraceServiceRequest()), args.calls)
        health, _ = sample(getting(process.http_url + "/healthz"), args.calls)
        print(f"baseline Export (empty, database up):  {spread(base)}")
        print(f"baseline GET /healthz:                  {spread(health)}")
        pg.stop("fast")
        refused, codes = sample(exporting(stub, one_span), args.calls)
        print(f"refusal during outage:                  {spread(refused)}  {dict(codes)}")
        ready, statuses = sample(getting(process.http_url + "/readyz"), args.calls)
        print(f"GET /readyz during outage:              {spread(ready)}  {dict(statuses)}")
        recoveries = []
        for attempt in range(args.repeat):
            if attempt:
                pg.stop("fast")
            time.sleep(args.outage)
            pg.start()
            started = time.perf_counter()
            call = exporting(stub, new_batch(1)[0])
            while call() != "OK" and time.perf_counter() - started < _PHASE_LIMIT_S:
                pass
            recoveries.append(time.perf_counter() - started)
        print(f"recovery after pg_ctl start:            median {ms(statistics.median(recoveries))}"
              f", max {ms(max(recoveries))} (n={len(recoveries)})")


def load(targets: list[str], seconds: float) -> tuple[int, float]:
    """Spans acknowledged by 4 one-shot senders in about ``seconds``, and the elapsed time."""
    ledger = Ledger()
    began = time.perf_counter()
    senders = run_senders(Sender(targets, ledger, retry=False, spans_per_batch=100)
                          for _ in range(4))
    time.sleep(seconds)
    stop_senders(senders)
    return len(ledger.acked), time.perf_counter() - began


def spooling(pg: PostgresInstance, folder: Path, args: argparse.Namespace) -> None:
    request_bytes = len(new_batch(100)[0].SerializeToString())
    before = len(stored_keys(pg.url))  # what the refusal phase stored
    with collector(pg, folder / "spool") as process:
        up, up_s = load([process.grpc_target], args.load_seconds)
        print(f"baseline throughput, database up:       {up / up_s:,.0f} spans/s "
              f"({up / 100 * request_bytes / up_s / 1e6:.1f} MB/s of requests)")
        pg.stop("fast")
        down, down_s = load([process.grpc_target], args.load_seconds)
        print(f"spool throughput, database down:        {down / down_s:,.0f} spans/s "
              f"({down / 100 * request_bytes / down_s / 1e6:.1f} MB/s of requests)")
        pg.start()
        began = time.perf_counter()
        while (len(stored_keys(pg.url)) < before + up + down
               and time.perf_counter() - began < _PHASE_LIMIT_S):
            time.sleep(0.05)
        replayed = len(stored_keys(pg.url)) - before - up
        print(f"replay after the outage:                {replayed} of {down} spooled spans "
              f"stored {ms(time.perf_counter() - began)} after pg_ctl start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per latency figure")
    parser.add_argument("--repeat", type=int, default=3, help="outages for the recovery figure")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds each outage lasts")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="seconds of load")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="xray-bench-faults-"))
    folder.chmod(0o755)  # the cluster's user must reach its data directory
    pg = PostgresInstance(folder / "pg")
    try:
        pg.init()
        pg.start()
        refusals(pg, folder, args)
        spooling(pg, folder, args)
    finally:
        if pg.running:
            pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
