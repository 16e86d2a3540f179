"""Stopping drains: new requests are refused retryably, requests already received finish
within the grace period or are answered UNAVAILABLE, never CANCELLED."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread, Endpoints
from tests.collector.test_overload import wait_for_lock_waiter
from tests.otlp_builders import request, span
from xray_otel import conventions as c


class Outcome:
    """What one export, run on a thread, ended with."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.retry_hint = False
        self.done = threading.Event()

    def export(self, stub: TraceServiceStub, batch: object) -> None:
        try:
            stub.Export(batch, timeout=60)
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.code = exc.code()
            # The collector's own refusal carries RetryInfo; gRPC's (a closed port, calls
            # cancelled when the server's grace runs out) carries none.
            self.retry_hint = "google.rpc.retryinfo-bin" in dict(exc.trailing_metadata() or ())
        finally:
            self.done.set()

    @property
    def refused_by_collector(self) -> bool:
        return self.code == grpc.StatusCode.UNAVAILABLE and self.retry_hint


def wait_until_draining(endpoints: Endpoints, deadline_s: float = 30) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        try:
            url = f"http://127.0.0.1:{endpoints.http_port}/readyz"
            urllib.request.urlopen(url, timeout=3).close()
        except urllib.error.HTTPError as exc:
            with exc:
                if json.loads(exc.read())["status"] == "shutting_down":
                    return
        time.sleep(0.02)
    pytest.fail("the collector never started draining")


@pytest.mark.parametrize("finishes_in_grace", [True, False], ids=["finished", "refused"])
def test_stop_drains_requests_in_flight(db: psycopg.Connection, migrated_url: str,
                                        tmp_path: Path, finishes_in_grace: bool) -> None:
    grace = 30.0 if finishes_in_grace else 1.5
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path, grpc_port=0,
                             http_port=0, shutdown_grace=grace)
    collector = CollectorThread(config)
    endpoints = collector.start()
    stub = TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}"))
    held, late = Outcome(), Outcome()
    with psycopg.connect(migrated_url) as locker:
        locker.execute("LOCK TABLE xray_runs IN ACCESS EXCLUSIVE MODE")
        threading.Thread(target=held.export,
                         args=(stub, request(span("held", {c.STEP_TYPE: "llm"})))).start()
        wait_for_lock_waiter(db, locker)
        stopping = threading.Thread(target=collector.stop)
        stopping.start()
        wait_until_draining(endpoints)
        late.export(stub, request(span("late", {c.STEP_TYPE: "llm"})))
        assert late.refused_by_collector
        if finishes_in_grace:
            locker.rollback()  # the held request can now commit
        else:
            assert held.done.wait(60), "the held request was never answered"
    stopping.join(60)
    assert not stopping.is_alive()
    assert held.done.wait(60)
    stored = db.execute("SELECT step_name FROM xray_steps").fetchall()
    if finishes_in_grace:
        assert held.code == grpc.StatusCode.OK and stored == [("held",)]
    else:
        assert held.refused_by_collector and stored == []
