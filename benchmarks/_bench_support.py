"""What the benchmarks share: databases (a server, a scratch database, a clean slate) and
threaded workers that time a load the way several exporters would send it.

Used by ``ingest.py`` and ``artifacts.py`` (run as scripts, so this folder is on
``sys.path``).
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import grpc
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector_service.store.citus import make_single_node, server_preloads_citus
from collector_service.store.embedded import EmbeddedPostgres


class BenchmarkError(RuntimeError):
    """The benchmark could not run, or the collector stored something other than expected."""


def server_description(url: str) -> str:
    """Where the server is, without credentials."""
    params = conninfo_to_dict(url)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


@contextlib.contextmanager
def embedded_server(directory: Path) -> Iterator[str]:
    """An embedded PostgreSQL in ``directory``, stopped on exit."""
    embedded = EmbeddedPostgres(directory)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``server_url``; dropped on exit."""
    name = f"xray_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        citus = server_preloads_citus(admin)
    url = make_conninfo(server_url, dbname=name)
    try:
        if citus:
            make_single_node(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    return str(row[0]) if row else "unknown"


def reset_tables(url: str) -> None:
    """Empty the X-Ray tables and checkpoint, so each phase starts from the same state."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE xray_steps, xray_runs, xray_artifacts")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")  # flush earlier phases' writes outside the timing


def check_response(response: ExportTraceServiceResponse) -> None:
    """Fail unless the collector stored every span as sent."""
    partial = response.partial_success
    if partial.rejected_spans or partial.error_message:
        raise BenchmarkError(f"the collector did not store the spans as sent "
                             f"({partial.rejected_spans} rejected): {partial.error_message[:300]}")


T = TypeVar("T")


@dataclass
class WorkState(Generic[T]):
    """What the worker threads share: the work, the start line, and what they report."""

    work: queue.SimpleQueue[T]
    start: threading.Barrier
    finished: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def _worker(open_worker: Callable[[], contextlib.AbstractContextManager[Callable[[T], None]]],
            state: WorkState[T]) -> None:
    """Set up (connect) before the start line, drain the work, note the finish time."""
    try:
        with open_worker() as do:
            state.start.wait()
            while True:
                try:
                    item = state.work.get_nowait()
                except queue.Empty:
                    state.finished.append(time.perf_counter())
                    return
                do(item)
    except BaseException as exc:  # reported by timed_workers on the main thread
        state.errors.append(exc)
        state.start.abort()


def timed_workers(items: Sequence[T], workers: int,
                  open_worker: Callable[[], contextlib.AbstractContextManager[Callable[[T], None]]]
                  ) -> float:
    """Process ``items`` on ``workers`` threads; wall time from the start line to the last."""
    state: WorkState[T] = WorkState(queue.SimpleQueue(), threading.Barrier(workers + 1))
    for item in items:
        state.work.put(item)
    threads = [threading.Thread(target=_worker, args=(open_worker, state), name=f"worker-{i}")
               for i in range(workers)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    with contextlib.suppress(threading.BrokenBarrierError):
        state.start.wait()
        began = time.perf_counter()
    for thread in threads:
        thread.join()
    if state.errors:
        error = state.errors[0]
        if isinstance(error, BenchmarkError):
            raise error
        raise BenchmarkError(f"worker failed: {error!r}") from error
    return max(state.finished) - began




Sender = Callable[[ExportTraceServiceRequest], None]


def grpc_exporter(port: int, max_bytes: int = 64 * 1024 * 1024, export_timeout_s: float = 120.0,
                  credentials: grpc.ChannelCredentials | None = None,
                  metadata: tuple[tuple[str, str], ...] = (),
                  ) -> Callable[[], contextlib.AbstractContextManager[Sender]]:
    """A factory of OTLP/gRPC senders, each with its own channel, connected on entry.

    With ``credentials`` the channel is TLS; ``metadata`` goes with every call (a token).
    """

    @contextlib.contextmanager
    def open_sender() -> Iterator[Callable[[ExportTraceServiceRequest], None]]:
        options = [("grpc.max_send_message_length", max_bytes)]
        target = f"127.0.0.1:{port}"
        with (grpc.secure_channel(target, credentials, options=options) if credentials
              else grpc.insecure_channel(target, options=options)) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]

            def send(request: ExportTraceServiceRequest) -> None:
                check_response(stub.Export(request, timeout=export_timeout_s,
                                           metadata=metadata))

            yield send

    return open_sender
