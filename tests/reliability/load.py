"""Load for fault tests: sender threads that export fresh spans and keep a ledger.

Every span a sender builds has a new (trace_id, span_id), so the ledger can say exactly
which spans a collector acknowledged, and the database can be checked against it. A
retrying sender behaves like a careful exporter: it sends the same batch again, to the
next collector in its list, after ``UNAVAILABLE`` (which is also what a refused or reset
connection looks like), until the batch is acknowledged. A one-shot sender records what
each request ended with and moves on.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from tests.otlp_builders import new_trace_id, request, span
from xray_otel import conventions as c

SpanKey = tuple[str, str]
"""(trace_id, span_id) in lowercase hex, as ``xray_steps`` stores them."""

CHANNEL_OPTIONS = [  # reconnect promptly to a restarted collector
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_RPC_TIMEOUT_S = 30.0
_RETRY_PAUSE_S = 0.1
_GIVE_UP_S = 120.0


@dataclass
class Ledger:
    """What the senders were told, shared by all of them (thread-safe)."""

    acked: set[SpanKey] = field(default_factory=set)
    cancelled: set[SpanKey] = field(default_factory=set)
    """Spans of requests gRPC answered CANCELLED: it does so only for a call that reaches
    a server in the instant it closes, before the collector sees it."""
    outcomes: Counter[str] = field(default_factory=Counter)
    acks_by_target: Counter[str] = field(default_factory=Counter)
    in_flight_at: list[tuple[float, float, str]] = field(default_factory=list)
    """(sent, answered, outcome) of each request, in ``time.monotonic()`` terms."""
    _sending: int = 0
    """Requests sent and not yet answered."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sending(self) -> float:
        """Count one request as in flight from now; the moment it was sent, for ``record``."""
        with self._lock:
            self._sending += 1
            return time.monotonic()

    def record(self, target: str, keys: Sequence[SpanKey], outcome: str, sent: float) -> None:
        """The answer to a request counted by ``sending``, timed under the lock, so a
        moment taken by ``while_in_flight`` falls strictly between its sent and answered."""
        with self._lock:
            self._sending -= 1
            self._note(target, keys, outcome, sent, time.monotonic())

    def gave_up(self, keys: Sequence[SpanKey], moment: float) -> None:
        with self._lock:
            self._note("", keys, "GAVE_UP", moment, moment)

    def while_in_flight(self, act: Callable[[], None], timeout_s: float = 60.0) -> float:
        """Call ``act`` at a moment when at least one request is in flight; that moment.

        Senders spend part of each turn building their next batch in Python, so at any
        single instant they may all be between requests; this waits for one that is not.
        """
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            with self._lock:
                if self._sending:
                    moment = time.monotonic()
                    act()
                    return moment
            time.sleep(0.001)
        raise AssertionError("no request was ever in flight")

    def _note(self, target: str, keys: Sequence[SpanKey], outcome: str,
              sent: float, answered: float) -> None:
        self.outcomes[outcome] += 1
        self.in_flight_at.append((sent, answered, outcome))
        if outcome == "OK":
            self.acked.update(keys)
            self.acks_by_target[target] += 1
        elif outcome == "CANCELLED":
            self.cancelled.update(keys)

    def acks(self, target: str | None = None) -> int:
        with self._lock:
            return self.acks_by_target[target] if target else sum(self.acks_by_target.values())

    def spanning(self, moment: float) -> list[str]:
        """Outcomes of the requests sent before ``moment`` and answered after it."""
        with self._lock:
            return [o for sent, answered, o in self.in_flight_at if sent < moment < answered]


def new_batch(spans_per_batch: int, payload_chars: int = 200
              ) -> tuple[ExportTraceServiceRequest, list[SpanKey]]:
    """One request of fresh step spans in one new trace, and their keys."""
    trace_id = new_trace_id()
    spans = [span(f"filter-{i}", {c.STEP_TYPE: "filter", c.STEP_SEQ: i + 1,
                                  c.STEP_CANDIDATES_IN: 1000, c.STEP_CANDIDATES_OUT: i,
                                  c.STEP_WHY: "x" * payload_chars}, trace_id=trace_id)
             for i in range(spans_per_batch)]
    keys = [(s.trace_id.hex(), s.span_id.hex()) for s in spans]
    return request(*spans, service="reliability"), keys


class Sender(threading.Thread):
    """Exports fresh batches to ``targets`` until ``stop()``; see the module docstring."""

    def __init__(self, targets: Sequence[str], ledger: Ledger, *, retry: bool = True,
                 spans_per_batch: int = 50, pause_s: float = 0.0) -> None:
        super().__init__(daemon=True, name="reliability-sender")
        self.targets = list(targets)
        self.ledger = ledger
        self.retry = retry
        self.spans_per_batch = spans_per_batch
        self.pause_s = pause_s
        self._halt = threading.Event()
        self._turn = 0

    def stop(self) -> None:
        """Send no new batch; a retrying sender still finishes the one it holds."""
        self._halt.set()

    def run(self) -> None:
        channels = {t: grpc.insecure_channel(t, options=CHANNEL_OPTIONS) for t in self.targets}
        stubs = {t: TraceServiceStub(ch) for t, ch in channels.items()}
        try:
            while not self._halt.is_set():
                batch, keys = new_batch(self.spans_per_batch)
                if self.retry:
                    self._until_acknowledged(stubs, batch, keys)
                else:
                    self._once(stubs[self._pick()], batch, keys)
                self._halt.wait(self.pause_s)
        finally:
            for channel in channels.values():
                channel.close()

    def _pick(self) -> str:
        target = self.targets[self._turn % len(self.targets)]
        self._turn += 1
        return target

    def _once(self, stub: TraceServiceStub, batch: ExportTraceServiceRequest,
              keys: Sequence[SpanKey], target: str = "") -> str:
        sent = self.ledger.sending()
        try:
            stub.Export(batch, timeout=_RPC_TIMEOUT_S)
            outcome = "OK"
        except grpc.RpcError as exc:
            outcome = exc.code().name
        self.ledger.record(target or self.targets[0], keys, outcome, sent)
        if outcome == "UNAVAILABLE":
            time.sleep(_RETRY_PAUSE_S)
        return outcome

    def _until_acknowledged(self, stubs: dict[str, TraceServiceStub],
                            batch: ExportTraceServiceRequest, keys: Sequence[SpanKey]) -> None:
        give_up = time.monotonic() + _GIVE_UP_S
        while time.monotonic() < give_up:
            target = self._pick()
            outcome = self._once(stubs[target], batch, keys, target)
            if outcome != "UNAVAILABLE":
                return  # acknowledged, or an outcome the test will report
        self.ledger.gave_up(keys, give_up)


def run_senders(senders: Iterable[Sender]) -> list[Sender]:
    started = list(senders)
    for sender in started:
        sender.start()
    return started


def stop_senders(senders: Iterable[Sender], timeout_s: float = _GIVE_UP_S + 30) -> None:
    """Stop every sender and wait until each has finished its last batch."""
    senders = list(senders)
    for sender in senders:
        sender.stop()
    for sender in senders:
        sender.join(timeout_s)
        assert not sender.is_alive(), "a sender never finished its last batch"


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` if it never is."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stored_keys(url: str) -> list[SpanKey]:
    """Every (trace_id, span_id) in ``xray_steps``, duplicates included."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT trace_id, span_id FROM xray_steps").fetchall()
    return [(str(t), str(s)) for t, s in rows]


def wait_stored(url: str, expected: set[SpanKey], timeout_s: float = 60.0) -> list[SpanKey]:
    """The stored keys once all of ``expected`` is there (or the timeout passed)."""
    give_up = time.monotonic() + timeout_s
    while True:
        stored = stored_keys(url)
        if expected <= set(stored) or time.monotonic() > give_up:
            return stored
        time.sleep(0.25)


TIMED_OUT = 0
"""The status ``http_get`` and ``http_post`` report when no answer came in time."""


def http_get(url: str, timeout_s: float) -> tuple[int, dict[str, str]]:
    return _http(urllib.request.Request(url), timeout_s)


def http_post(url: str, body: bytes, timeout_s: float) -> tuple[int, dict[str, str]]:
    return _http(urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-protobuf"}), timeout_s)


def _http(req: urllib.request.Request, timeout_s: float) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:  # its body is an open connection
            return exc.code, dict(exc.headers)
    except TimeoutError:
        return TIMED_OUT, {}
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return TIMED_OUT, {}
        raise
