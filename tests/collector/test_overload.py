"""Past ``max_inflight`` requests the collector refuses at once with a retryable status."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread
from tests.collector.test_receivers import post
from tests.fix_collector import RunningCollector
from tests.otlp_builders import request, span
from xray_otel import conventions as c


def wait_for_lock_waiter(conn: psycopg.Connection, locker: psycopg.Connection,
                         deadline_s: float = 30) -> None:
    """Block until a backend waits on the lock ``locker`` holds (the held-up export).

    Only a backend blocked by ``locker`` counts: ``pg_stat_activity`` shows the whole
    server, where other databases (other test runs sharing it) have lock waiters of their
    own, and taking one of those for the export would start the test before the export
    has reached the collector."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        waiting = conn.execute("SELECT count(*) FROM pg_stat_activity"
                               " WHERE %s = ANY(pg_blocking_pids(pid))",
                               (locker.info.backend_pid,)).fetchone()
        if waiting and waiting[0] > 0:
            return
        time.sleep(0.05)
    pytest.fail("the export never reached the database")


def test_requests_beyond_capacity_are_refused_then_accepted(
        db: psycopg.Connection, migrated_url: str, tmp_path: Path) -> None:
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path, grpc_port=0,
                             http_port=0, max_inflight=1)
    batch = request(span("s", {c.STEP_TYPE: "llm"}))
    with CollectorThread(config) as endpoints:
        stub = TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}"))
        with psycopg.connect(migrated_url) as locker:
            locker.execute("LOCK TABLE xray_runs IN ACCESS EXCLUSIVE MODE")
            first = threading.Thread(target=stub.Export, args=(batch,))
            first.start()
            wait_for_lock_waiter(db, locker)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Export(batch, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            status, headers, _ = post(RunningCollector(endpoints, tmp_path),
                                      batch.SerializeToString())
            assert status == 429 and headers["Retry-After"] == "1"
        first.join(timeout=30)
        assert not first.is_alive()
        assert db.execute("SELECT count(*) FROM xray_steps").fetchone() == (1,)
        stub.Export(batch, timeout=10)  # capacity is back
