"""Overload: ``xray collector`` flooded with more than it can store, memory bounded.

The collector runs as a subprocess with small limits (``--max-inflight 8``,
``--max-inflight-bytes 16MiB``). First a calibration with a few senders that never
exceed the limits measures what it stores per second; then sender threads (16 gRPC, 8
HTTP, 1.4 MiB batches of 1,500 steps) are paced to offer four times that for a minute,
sending on schedule instead of waiting for a retry hint. Throughout, RSS is read from
``/proc/PID/status`` every half second and ``/healthz`` is asked with a 5 s timeout.

The memory bound follows from the settings, not from the clock:

    peak RSS <= idle RSS after warm-up
                + EXPANSION * max_inflight_bytes        (admitted requests: the raw body,
                                                         the decoded message, the mapped rows)
                + gRPC clients * request size           (whole messages gRPC holds, admitted
                                                         or not: one per client, at most
                                                         CONCURRENT_RPCS_FACTOR * max_inflight)
                + SLACK                                  (allocator fragmentation, threads)

Every refusal must be retryable with a hint (``UNAVAILABLE`` + ``RetryInfo``, HTTP 429 or
503 + ``Retry-After``) and every acknowledged span must be in the database afterwards.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest

from tests.fix_collector_process import CollectorProcess, SpawnCollector
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import request, span
from xray_otel import conventions as c

pytestmark = pytest.mark.slow

MiB = 1024**2
MAX_INFLIGHT = 8
MAX_INFLIGHT_BYTES = 16 * MiB
EXPANSION = 8
"""Memory per admitted request byte (raw body, decoded message, mapped rows, COPY
buffers), with room: in this test's runs peak RSS rose 90-145 MiB over idle with at most
11 MiB admitted (8 requests of 1.4 MiB) and 22 MiB of messages held by gRPC."""
SLACK = 64 * MiB
STEPS_PER_REQUEST = 1500
OVERLOAD = 4
CALIBRATE_S = 10.0
FLOOD_S = 60.0
SENDERS = {"grpc": 2 * MAX_INFLIGHT, "http": MAX_INFLIGHT}
"""gRPC clients stay within gRPC's own concurrency limit (``CONCURRENT_RPCS_FACTOR`` times
``max_inflight``): past it gRPC itself answers RESOURCE_EXHAUSTED without RetryInfo, and
each further connection adds the messages gRPC buffers for it, which the settings do not
bound (measured: about 2.7 MiB per extra client)."""
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MARKER = bytes(range(0xA0, 0xB0))
"""The trace id of every span in the template; each request replaces it with a fresh one."""


def template() -> bytes:
    """One run of ``STEPS_PER_REQUEST`` steps (1.4 MiB), under the trace id ``MARKER``."""
    note = "candidate scored below the relevance threshold " * 12
    steps = [span(f"filter_{i}", {
        c.STEP_TYPE: "filter", c.RUN_PIPELINE: "overload", c.STEP_SEQ: i + 1,
        c.STEP_CANDIDATES_IN: 5000, c.STEP_CANDIDATES_OUT: 50 + i,
        c.STEP_WHY: f"Dropped {4950 - i} of 5000 below relevance 0.7",
        c.STEP_WHY_JSON: '{"top_reject_reasons": {"category_mismatch": 4720}}',
        c.metric_attribute("latency_ms"): 12.5, "note": note,
    }, trace_id=MARKER, span_id=(i + 1).to_bytes(8, "big")) for i in range(STEPS_PER_REQUEST)]
    return request(*steps, service="overload").SerializeToString()


@dataclass
class Tally:
    """What the senders saw; shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    acknowledged: list[bytes] = field(default_factory=list)

    def add(self, outcome: str, trace_id: bytes) -> None:
        with self.lock:
            self.attempts += 1
            if outcome == "ok":
                self.acknowledged.append(trace_id)
            elif outcome.startswith("refused "):
                self.refusals[outcome.removeprefix("refused ")] += 1
            else:
                self.errors.append(outcome)


Sender = Callable[[bytes], str]


@contextmanager
def grpc_sender(collector: CollectorProcess) -> Iterator[Sender]:
    with grpc.insecure_channel(collector.grpc_target, options=[
            ("grpc.max_send_message_length", 64 * MiB)]) as channel:
        export = channel.unary_unary(EXPORT)  # raw bytes in, raw bytes out

        def send(payload: bytes) -> str:
            try:
                export(payload, timeout=120)
            except grpc.RpcError as exc:
                hint = dict(exc.trailing_metadata() or ()).get("google.rpc.retryinfo-bin")
                if exc.code() == grpc.StatusCode.UNAVAILABLE and hint:
                    return "refused UNAVAILABLE+RetryInfo"
                return f"grpc {exc.code().name}: {exc.details()}"
            return "ok"

        yield send


@contextmanager
def http_sender(collector: CollectorProcess) -> Iterator[Sender]:
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=120)
    try:
        def send(payload: bytes) -> str:
            conn.request("POST", "/v1/traces", payload,
                         {"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return "ok"
            if response.status in (429, 503) and response.getheader("Retry-After"):
                return f"refused HTTP {response.status}+Retry-After"
            return f"http {response.status}"

        yield send
    finally:
        conn.close()


SENDER_KINDS = {"grpc": grpc_sender, "http": http_sender}


def drive(collector: CollectorProcess, body: bytes, senders: dict[str, int],
          duration_s: float, rate: float | None) -> Tally:
    """Senders in threads for ``duration_s``; ``rate`` requests/s in all (None: as fast as
    answered). A refused request is not retried: the next one is simply sent on time."""
    tally = Tally()
    threads = sum(senders.values())
    period = 0.0 if rate is None else threads / rate
    stop_at = time.monotonic() + duration_s

    def loop(kind: str, index: int) -> None:
        counter = index << 32
        with SENDER_KINDS[kind](collector) as send:
            next_at = time.monotonic()
            while (now := time.monotonic()) < stop_at:
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at, time.monotonic() - period) + period  # no catch-up bursts
                counter += 1
                trace_id = counter.to_bytes(16, "big")
                try:
                    outcome = send(body.replace(MARKER, trace_id))
                except Exception as exc:  # a broken connection is an error, not a refusal
                    outcome = f"{type(exc).__name__}: {exc}"
                tally.add(outcome, trace_id)

    workers = [threading.Thread(target=loop, args=(kind, i), name=f"sender-{kind}-{i}")
               for i, kind in enumerate(k for k, n in senders.items() for _ in range(n))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tally


class Watch:
    """Samples the collector's RSS and asks ``/healthz`` every half second, in threads."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        self.rss: list[int] = []
        self.health: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample_rss),
                         threading.Thread(target=self._ask_health)]

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _sample_rss(self) -> None:
        while not self._stop.wait(0.5):
            self.rss.append(self.collector.rss_bytes())

    def _ask_health(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with urllib.request.urlopen(self.collector.http_url + "/healthz",
                                            timeout=5) as response:
                    self.health[str(response.status)] += 1
            except Exception as exc:
                self.health[type(exc).__name__] += 1


def peak_rss(collector: CollectorProcess) -> int:
    """The kernel's high-water mark of the process's RSS: no peak between samples is missed."""
    for line in Path(f"/proc/{collector.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {collector.pid}")


def test_memory_stays_bounded_and_refusals_are_retryable_at_4x_overload(
        databases: DatabaseFactory, spawn_collector: SpawnCollector) -> None:
    url = databases.create("xray_overload")
    body = template()
    flags = ("--max-inflight", str(MAX_INFLIGHT), "--max-inflight-bytes", str(MAX_INFLIGHT_BYTES),
             "--log-level", "WARNING")
    collector = spawn_collector(url, *flags)
    warm = drive(collector, body, {"grpc": 2}, 3.0, None)
    assert not warm.errors and not warm.refusals
    idle_rss = collector.rss_bytes()
    calibration = drive(collector, body, {"grpc": 4}, CALIBRATE_S, None)
    assert not calibration.errors and not calibration.refusals  # under the limits
    capacity = len(calibration.acknowledged) / CALIBRATE_S
    with Watch(collector) as watch:
        flood = drive(collector, body, SENDERS, FLOOD_S, OVERLOAD * capacity)
    peak = peak_rss(collector)
    bound = idle_rss + EXPANSION * MAX_INFLIGHT_BYTES + SENDERS["grpc"] * len(body) + SLACK
    print(f"\noverload: capacity {capacity:.1f} req/s ({capacity * len(body) / MiB:.1f} MiB/s),"
          f" offered {flood.attempts / FLOOD_S:.1f} req/s, acknowledged"
          f" {len(flood.acknowledged)}, refused {dict(flood.refusals)};"
          f" RSS idle {idle_rss / MiB:.0f} MiB, sampled max {max(watch.rss) / MiB:.0f} MiB,"
          f" peak (VmHWM) {peak / MiB:.0f} MiB, bound {bound / MiB:.0f} MiB;"
          f" healthz {dict(watch.health)}, errors {Counter(e[:40] for e in flood.errors)}")
    assert flood.errors == []
    assert set(flood.refusals) <= {"UNAVAILABLE+RetryInfo", "HTTP 429+Retry-After",
                                   "HTTP 503+Retry-After"}
    assert flood.attempts >= 2 * len(flood.acknowledged)  # the collector was overloaded
    assert set(watch.health) == {"200"}
    assert peak <= bound
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM xray_steps WHERE trace_id = ANY(%s)",
                              ([t.hex() for t in flood.acknowledged],)).fetchone()
    assert stored == (len(flood.acknowledged) * STEPS_PER_REQUEST,)
