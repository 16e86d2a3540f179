"""Artifacts: content-addressed stores (local and S3), ceilings, downgrades, fetching."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from collector_service.config import CollectorConfig
from collector_service.ingest.mapping import map_request
from collector_service.ingest.offload import ArtifactOffloader, OffloadPolicy
from collector_service.server import CollectorThread
from collector_service.store.artifacts import (
    ArtifactCorrupted,
    ArtifactNotFound,
    LocalArtifactStore,
    S3ArtifactStore,
    artifact_id,
    verified,
)
from collector_service.store.rows import StepRow
from tests.fix_collector import RunningCollector
from tests.fix_s3 import S3Server
from tests.otlp_builders import request, span
from xray_otel import conventions as c

PAYLOAD = b"<html>" + b"search results " * 2000 + b"</html>"


def s3_store(s3: S3Server) -> S3ArtifactStore:
    return S3ArtifactStore(s3.bucket, "xray/", s3.endpoint_url)


def read_all(store: LocalArtifactStore | S3ArtifactStore, key: str) -> bytes:
    return b"".join(verified(key, store.open(key)))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_round_trip_dedupe_and_corruption(kind: str, tmp_path: Path, s3: S3Server) -> None:
    store = LocalArtifactStore(tmp_path) if kind == "local" else s3_store(s3)
    key = artifact_id(PAYLOAD)
    first = store.put(key, PAYLOAD, "text/html")
    assert store.put(key, PAYLOAD, "text/html") == first
    assert read_all(store, key) == PAYLOAD
    if kind == "local":
        assert len(list(tmp_path.rglob(key))) == 1
        Path(first).write_bytes(PAYLOAD.replace(b"search", b"SEARCH"))
    else:
        listed = s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]
        assert [o["Key"] for o in listed] == [f"xray/{key[:2]}/{key}"]
        s3.client.put_object(Bucket=s3.bucket, Key=f"xray/{key[:2]}/{key}", Body=b"tampered")
    with pytest.raises(ArtifactCorrupted):
        read_all(store, key)
    with pytest.raises(ArtifactNotFound):
        read_all(store, artifact_id(b"never stored"))


def one_step(attributes: dict[str, object]) -> StepRow:
    batch = map_request(request(span("s", {c.STEP_TYPE: "search", **attributes})),
                        datetime.now(UTC))
    return batch.steps[0]


def offload(store: object, step: StepRow, under_pressure: bool = False,
            **policy: float) -> tuple[StepRow, list]:  # type: ignore[type-arg]
    offloader = ArtifactOffloader(store, OffloadPolicy(**policy))  # type: ignore[arg-type]
    steps, refs = asyncio.run(offloader.offload([step], under_pressure))
    return steps[0], refs


def test_values_over_the_inline_ceiling_become_references(tmp_path: Path) -> None:
    big_json = json.dumps({"top_reject_reasons": {f"r{i}": i for i in range(2000)}})
    step = one_step({c.STEP_WHY: "w" * 5000, c.STEP_WHY_JSON: big_json, "note": "n" * 5000,
                     c.STEP_OUTPUT: json.dumps([1, 2]), c.ARTIFACT_PREFIX + "small": "tiny"})
    stored, refs = offload(LocalArtifactStore(tmp_path), step, inline_ceiling=4096)
    assert {r.attribute for r in refs} == {c.STEP_WHY, c.STEP_WHY_JSON, "note",
                                           c.ARTIFACT_PREFIX + "small"}
    assert all(not r.downgraded and Path(r.location or "").exists() for r in refs)
    assert stored.output == [1, 2]  # small values stay inline
    assert stored.why is not None and stored.why.endswith(
        f"[full text: artifact {artifact_id(b'w' * 5000)}]")
    compact = json.dumps(json.loads(big_json), separators=(",", ":"))  # as stored
    assert stored.why_json == {"xray_artifact": {
        "artifact_id": artifact_id(compact.encode()), "size_bytes": len(compact),
        "content_type": "application/json", "preview": compact[:199] + "…"}}
    assert stored.attributes[c.ARTIFACT_PREFIX + "small"]["artifact_id"] == artifact_id(b"tiny")
    assert all(len(json.dumps(v)) < 4096 for v in stored.attributes.values())


def test_too_large_store_down_slow_or_pressure_downgrade_but_keep_the_step(
        tmp_path: Path, s3: S3Server) -> None:
    step = one_step({c.ARTIFACT_PREFIX + "raw": "x" * 3000, c.metric_attribute("m"): 1.5,
                     c.STEP_CANDIDATES_IN: 10})
    too_large, refs = offload(LocalArtifactStore(tmp_path), step, max_artifact_bytes=1000)
    assert refs[0].downgraded and "artifact limit" in (refs[0].downgrade_reason or "")

    dead = S3ArtifactStore(s3.bucket, endpoint_url="http://127.0.0.1:1", timeout_s=1)
    down, refs = offload(dead, step)
    assert refs[0].downgraded and refs[0].storage == "summary"
    assert "store failed" in (refs[0].downgrade_reason or "")

    class SlowStore(LocalArtifactStore):
        def put(self, key: str, data: bytes, content_type: str) -> str:
            time.sleep(1.0)
            return super().put(key, data, content_type)

    slow, refs = offload(SlowStore(tmp_path), step, store_timeout_s=0.1)
    assert "slower" in (refs[0].downgrade_reason or "")
    pressured, refs = offload(LocalArtifactStore(tmp_path / "p"), step, under_pressure=True)
    assert "pressure" in (refs[0].downgrade_reason or "")
    assert not (tmp_path / "p").exists()
    for kept in (too_large, down, slow, pressured):
        assert kept.metrics == {"m": 1.5} and kept.candidates_in == 10
        assert kept.attributes[c.ARTIFACT_PREFIX + "raw"]["downgraded"]
        assert any("downgraded" in a.problem for a in kept.adjustments)


def test_object_is_written_before_the_row_that_references_it(
        db: psycopg.Connection, migrated_url: str, tmp_path: Path) -> None:
    seen_rows_at_put: list[int] = []

    class CheckingStore(LocalArtifactStore):
        def put(self, key: str, data: bytes, content_type: str) -> str:
            with psycopg.connect(migrated_url) as conn:
                row = conn.execute("SELECT count(*) FROM xray_artifacts").fetchone()
            seen_rows_at_put.append(row[0] if row else -1)
            return super().put(key, data, content_type)

    from collector_service import server

    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path, grpc_port=0,
                             http_port=0)
    original = server.build_artifact_store
    server.build_artifact_store = lambda _: CheckingStore(tmp_path / "a")  # type: ignore
    try:
        with CollectorThread(config) as endpoints:
            stub = TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}"))
            stub.Export(request(span("s", {c.STEP_TYPE: "llm",
                                           c.ARTIFACT_PREFIX + "prompt": "hello"})))
    finally:
        server.build_artifact_store = original
    assert seen_rows_at_put == [0]
    location = db.execute("SELECT location FROM xray_artifacts").fetchone()
    assert location is not None and Path(location[0]).read_bytes() == b"hello"


def test_collector_with_s3_store_and_a_message_over_grpc_default_limit(
        db: psycopg.Connection, migrated_url: str, tmp_path: Path, s3: S3Server) -> None:
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path, grpc_port=0,
                             http_port=0, artifact_store="s3", s3_bucket=s3.bucket,
                             s3_endpoint_url=s3.endpoint_url)
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB: over gRPC's default 4 MiB message limit
    with CollectorThread(config) as endpoints:
        stub = TraceServiceStub(grpc.insecure_channel(
            f"127.0.0.1:{endpoints.grpc_port}",
            options=[("grpc.max_send_message_length", 64 * 1024**2)]))
        stub.Export(request(span("s", {c.STEP_TYPE: "search",
                                       c.ARTIFACT_PREFIX + "raw_response": big})))
    row = db.execute("SELECT artifact_id, size_bytes, storage, location, content_type"
                     " FROM xray_artifacts").fetchone()
    key = hashlib.sha256(big).hexdigest()
    assert row == (key, len(big), "s3", f"s3://{s3.bucket}/xray/artifacts/{key[:2]}/{key}",
                   "application/octet-stream")
    body = s3.client.get_object(Bucket=s3.bucket, Key=f"xray/artifacts/{key[:2]}/{key}")
    assert body["Body"].read() == big
    attrs = db.execute("SELECT attributes FROM xray_steps").fetchone()
    assert attrs is not None and attrs[0][c.ARTIFACT_PREFIX + "raw_response"]["artifact_id"] == key


def fetch(collector: RunningCollector, key: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{collector.http_url}/v1/artifacts/{key}",
                                    timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_fetch_endpoint(collector: RunningCollector, db: psycopg.Connection) -> None:
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    stub.Export(request(span("s", {c.STEP_TYPE: "search", c.ARTIFACT_PREFIX + "raw": PAYLOAD})))
    key = artifact_id(PAYLOAD)
    assert fetch(collector, key) == (200, PAYLOAD)
    status, body = fetch(collector, artifact_id(b"unknown"))
    assert status == 404 and b"no step references" in body
    assert fetch(collector, "not-an-id")[0] == 400
    location = db.execute("SELECT location FROM xray_artifacts").fetchone()
    assert location is not None
    Path(location[0]).write_bytes(PAYLOAD.replace(b"results", b"RESULTS"))
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        fetch(collector, key)
    db.execute("UPDATE xray_artifacts SET downgraded = true, storage = 'summary',"
               " downgrade_reason = 'store failed: X'")
    status, body = fetch(collector, key)
    assert status == 404 and b"summary" in body and b"store failed" in body


def s3_collector_config(migrated_url: str, tmp_path: Path, s3: S3Server) -> CollectorConfig:
    return CollectorConfig(database_url=migrated_url, data_dir=tmp_path, grpc_port=0,
                           http_port=0, artifact_store="s3", s3_bucket=s3.bucket,
                           s3_endpoint_url=s3.endpoint_url)


def test_producer_uploads_are_referenced_and_missing_ones_are_not_trusted(
        db: psycopg.Connection, migrated_url: str, tmp_path: Path, s3: S3Server) -> None:
    key = artifact_id(PAYLOAD)
    s3.client.put_object(Bucket=s3.bucket, Key=f"xray/artifacts/{c.artifact_object_key(key)}",
                         Body=PAYLOAD, ContentType="text/html")
    missing = artifact_id(b"never uploaded")
    with CollectorThread(s3_collector_config(migrated_url, tmp_path, s3)) as endpoints:
        stub = TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}"))
        response = stub.Export(request(span("s", {
            c.STEP_TYPE: "search", c.ARTIFACT_PREFIX + "page": c.artifact_reference(key),
            c.ARTIFACT_PREFIX + "lost": c.artifact_reference(missing)})))
        assert "no stored object" in response.partial_success.error_message
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoints.http_port}/v1/artifacts/"
                                    f"{key}", timeout=10) as fetched:
            assert fetched.read() == PAYLOAD
    rows = db.execute("SELECT attribute, artifact_id, size_bytes, content_type, storage,"
                      " downgraded FROM xray_artifacts ORDER BY attribute").fetchall()
    assert rows == [
        (c.ARTIFACT_PREFIX + "lost", missing, 0, "application/octet-stream", "summary", True),
        (c.ARTIFACT_PREFIX + "page", key, len(PAYLOAD), "text/html", "s3", False),
    ]


def test_sdk_uploads_large_artifacts_itself_and_sends_the_reference(
        db: psycopg.Connection, migrated_url: str, tmp_path: Path, s3: S3Server) -> None:
    import xray_otel as xray

    big = b"%PDF" + bytes(range(256)) * 2000  # over the SDK's artifact limit below
    with CollectorThread(s3_collector_config(migrated_url, tmp_path, s3)) as endpoints:
        provider = xray.configure(
            service_name="uploader", endpoint=f"http://127.0.0.1:{endpoints.grpc_port}",
            insecure=True, set_global=False, max_artifact_bytes=64 * 1024,
            artifact_uploader=xray.S3ArtifactUploader(s3.bucket, endpoint_url=s3.endpoint_url))
        try:
            with xray.run("p", tracer_provider=provider), xray.step("search", name="s"):
                xray.record(artifacts={"report": big, "note": "small enough to send"})
            assert xray.flush(timeout=30)
        finally:
            xray.shutdown()
    rows = dict(db.execute("SELECT attribute, size_bytes FROM xray_artifacts"
                           " WHERE NOT downgraded").fetchall())
    assert rows == {c.ARTIFACT_PREFIX + "report": len(big),
                    c.ARTIFACT_PREFIX + "note": len(b"small enough to send")}
    stored = s3.client.get_object(
        Bucket=s3.bucket, Key=f"xray/artifacts/{c.artifact_object_key(artifact_id(big))}")
    assert stored["Body"].read() == big


def test_run_span_attributes_over_the_ceiling_leave_postgres(
        collector: RunningCollector, db: psycopg.Connection) -> None:
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    config_dump = json.dumps({"params": ["x" * 50] * 200})
    stub.Export(request(span("run", {c.RUN_PIPELINE: "p", "pipeline.config": config_dump,
                                     "small": "kept"})))
    attributes = db.execute("SELECT attributes FROM xray_runs").fetchone()
    assert attributes is not None
    assert attributes[0]["small"] == "kept"
    assert attributes[0]["pipeline.config"]["artifact_id"] == artifact_id(config_dump.encode())
    assert fetch(collector, artifact_id(config_dump.encode())) == (200, config_dump.encode())
    with urllib.request.urlopen(f"{collector.http_url}/stats", timeout=10) as response:
        stats = json.loads(response.read())
    assert stats["requests_total"] == {"grpc/ok": 1}
    assert (stats["runs_received_total"], stats["artifacts_stored_total"]) == (1, 1)
    assert "artifacts_downgraded_total" not in stats  # no reason has a count
