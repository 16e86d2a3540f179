"""Artifact store down mid-run: steps keep being stored, their payloads kept as summaries.

What ``ingest/offload.py`` promises, checked end to end (SDK → OTLP/gRPC → collector →
Postgres and the store): a payload the store fails to take is downgraded to a summary
(size, hash, preview), the step is stored anyway with every other value, the downgrade
shows in ``xray_artifacts.downgraded``, the step's ``ingest_warnings`` and the metrics,
and the export is acknowledged. Once the store is back, new payloads are stored whole.

Two stores fail: S3 (moto's real server, stopped and started again on the same port) and
the local folder (swapped for a plain file, so nothing can be written under it even by
root, for whom permission bits would not stop writes).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import boto3
import psycopg
import pytest

import xray_otel as xray
from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread
from collector_service.store.artifacts import artifact_id

PHASES = ("before", "down", "back")
STEPS_PER_PHASE = 3


class Outage(Protocol):
    config: dict[str, Any]

    def cut(self) -> None: ...

    def restore(self) -> None: ...


class S3Outage:
    """A moto S3 server of the test's own, stopped and restarted on the same port."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.server import ThreadedMotoServer

        for name, value in (("AWS_ACCESS_KEY_ID", "testing"),
                            ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(name, value)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        endpoint = f"http://127.0.0.1:{self.port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="xray-store-down")
        self.config = {"artifact_store": "s3", "s3_bucket": "xray-store-down",
                       "s3_endpoint_url": endpoint}
        self.running = True

    def cut(self) -> None:
        self._server.stop()
        self.running = False

    def restore(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port,
                                          verbose=False)
        self._server.start()  # moto keeps its buckets in the process: the bucket is back
        self.running = True


class FolderOutage:
    """The local artifact folder moved aside and a plain file put in its place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._aside = root.with_name(root.name + ".aside")
        root.mkdir(parents=True)
        self.config = {"artifact_store": "local", "artifact_dir": root}

    def cut(self) -> None:
        self.root.rename(self._aside)
        self.root.write_bytes(b"not a folder")

    def restore(self) -> None:
        self.root.unlink()
        self._aside.rename(self.root)


@pytest.fixture(params=["s3", "local"])
def outage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[Outage]:
    if request.param == "local":
        yield FolderOutage(tmp_path / "artifacts")
        return
    s3 = S3Outage(monkeypatch)
    yield s3
    if s3.running:
        s3.cut()


def payload(phase: str, index: int) -> str:
    return f"<html>{phase} page {index}</html>" + "search results " * 500


def run_pipeline(grpc_port: int, outage: Outage) -> str:
    """One run whose store fails after its first steps and comes back before its last."""
    provider = xray.configure(service_name="store-down",
                              endpoint=f"http://127.0.0.1:{grpc_port}", insecure=True,
                              set_global=False)
    before = xray.stats()
    try:
        with xray.run("competitor_search", entity="B0STORE", tracer_provider=provider) as run:
            for phase in PHASES:
                if phase == "down":
                    outage.cut()
                elif phase == "back":
                    outage.restore()
                for index in range(STEPS_PER_PHASE):
                    with xray.step("search", name=f"{phase}-{index}"):
                        xray.record(candidates_in=100, candidates_out=10 + index,
                                    metrics={"latency_ms": 12.5}, why=f"{phase} {index}",
                                    artifacts={"raw": payload(phase, index)})
                assert xray.flush(timeout=30)  # this phase's steps are sent and answered
        assert xray.flush(timeout=30)
    finally:
        xray.shutdown()
    counted = xray.stats() - before
    assert (counted.exported, counted.failed, counted.dropped) == (
        len(PHASES) * STEPS_PER_PHASE + 1, 0, 0)  # every export acknowledged
    return run.id


def fetch(http_port: int, key: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{http_port}/v1/artifacts/{key}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_steps_are_stored_with_summaries_while_the_store_is_down(
        outage: Outage, db: psycopg.Connection, migrated_url: str, tmp_path: Path) -> None:
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path / "xray",
                             grpc_port=0, http_port=0, spool_max_bytes=0, **outage.config)
    with CollectorThread(config) as endpoints:
        run_id = run_pipeline(endpoints.grpc_port, outage)
        rows = db.execute(
            "SELECT s.step_name, s.candidates_in, s.candidates_out, s.metrics, s.why,"
            " s.ingest_warnings, a.artifact_id, a.size_bytes, a.storage, a.location,"
            " a.downgraded, a.downgrade_reason, a.preview"
            " FROM xray_steps s JOIN xray_artifacts a USING (run_id, trace_id, span_id)"
            " WHERE s.run_id = %s ORDER BY s.started_at", (run_id,)).fetchall()
        assert [r[0] for r in rows] == [f"{p}-{i}" for p in PHASES
                                        for i in range(STEPS_PER_PHASE)]
        for (name, c_in, c_out, metrics, why, warnings, key, size, storage, location,
             downgraded, reason, preview) in rows:
            phase, index = name.split("-")
            sent = payload(phase, int(index)).encode()
            # Nothing but the payload itself is lost, whatever the store did.
            assert (c_in, c_out, metrics, why) == (100, 10 + int(index), {"latency_ms": 12.5},
                                                  f"{phase} {index}")
            assert (key, size) == (artifact_id(sent), len(sent))
            assert preview.startswith(f"<html>{phase} page {index}</html>")
            if phase == "down":
                assert (storage, location, downgraded) == ("summary", None, True)
                assert reason.startswith("store failed: ")
                assert warnings == [{"attribute": "xray.artifact.raw",
                                     "problem": f"artifact downgraded to a summary: {reason}"}]
                status, body = fetch(endpoints.http_port, key)
                assert status == 404 and b"summary" in body
            else:  # stored whole, readable and verified against its hash
                assert (storage, downgraded, reason, warnings) == (
                    outage.config["artifact_store"], False, None, None)
                assert location
                assert fetch(endpoints.http_port, key) == (200, sent)
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoints.http_port}/stats",
                                    timeout=10) as response:
            stats = json.loads(response.read())
    assert stats["artifacts_downgraded_total"] == {"store_failed": STEPS_PER_PHASE}
    assert stats["artifacts_stored_total"] == 2 * STEPS_PER_PHASE
    run = db.execute("SELECT status, pipeline FROM xray_runs WHERE run_id = %s",
                     (run_id,)).fetchone()
    assert run == ("ok", "competitor_search")
