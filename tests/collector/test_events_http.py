"""``POST /events`` on a real collector: JSON and protobuf, gzip, partial success, errors."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format

from collector_service.cli.main import main
from collector_service.ingest.events import step_span_id, trace_id_for
from collector_service.ingest.proto.xray.v1 import events_pb2 as pb
from tests.fix_collector import RunningCollector

RUN = {"runId": "run-7", "pipeline": "competitor_search", "entity": "B0CX"}
EVENTS: dict[str, Any] = {"serviceName": "shell", "events": [
    {"runStart": {**RUN, "time": "2026-03-01T10:00:00Z"}},
    {"stepStart": {"runId": "run-7", "stepId": "1", "seq": 1, "name": "keywords",
                   "type": "llm", "time": "2026-03-01T10:00:00Z"}},
    {"stepEnd": {"runId": "run-7", "stepId": "1", "time": "2026-03-01T10:00:01Z",
                 "why": "3 keywords", "output": ["phone case", "iphone case", "cover"]}},
    {"stepEnd": {"runId": "run-7", "stepId": "2", "seq": 2, "name": "category_filter",
                 "type": "filter", "startTime": "2026-03-01T10:00:01Z",
                 "time": "2026-03-01T10:00:02Z", "candidatesIn": 5000, "candidatesOut": 40,
                 "whyJson": {"top_reject_reasons": {"category_mismatch": 4720}},
                 "artifacts": {"raw_response": {"text": "<html>laptop stands</html>"}}}},
    {"runEnd": {**RUN, "time": "2026-03-01T10:00:03Z", "status": "STATUS_OK"}},
]}


def post(collector: RunningCollector, body: bytes, content_type: str = "application/json",
         encoding: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(collector.http_url + "/events", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_a_gzipped_json_batch_becomes_rows(collector: RunningCollector,
                                           db: psycopg.Connection) -> None:
    status, body, headers = post(collector, gzip.compress(json.dumps(EVENTS).encode()),
                                 encoding="gzip")
    assert (status, json.loads(body)) == (200, {})
    assert headers["Content-Type"].startswith("application/json")
    run = db.execute("SELECT status, pipeline, entity, service_name, span_id IS NOT NULL"
                     " FROM xray_runs").fetchall()
    assert run == [("ok", "competitor_search", "B0CX", "shell", True)]
    steps = db.execute(
        "SELECT seq, step_name, step_type, status, why, output, candidates_in, drop_ratio,"
        " pipeline, trace_id, span_id, attributes->'xray.artifact.raw_response'->>'preview'"
        " FROM xray_steps ORDER BY seq").fetchall()
    assert steps == [
        (1, "keywords", "llm", "ok", "3 keywords", ["phone case", "iphone case", "cover"],
         None, None, "competitor_search", trace_id_for("run-7"), step_span_id("run-7", "1"),
         None),
        (2, "category_filter", "filter", "ok", None, None, 5000, pytest.approx(0.992),
         "competitor_search", trace_id_for("run-7"), step_span_id("run-7", "2"),
         "<html>laptop stands</html>"),
    ]
    # The same batch again, as binary protobuf this time, changes nothing.
    before = db.execute("SELECT * FROM xray_steps ORDER BY seq").fetchall()
    batch = pb.EventBatch()
    json_format.ParseDict(EVENTS, batch)
    status, body, _ = post(collector, batch.SerializeToString(), "application/x-protobuf")
    assert status == 200 and pb.EventBatchResponse.FromString(body) == pb.EventBatchResponse()
    assert db.execute("SELECT * FROM xray_steps ORDER BY seq").fetchall() == before
    metrics = urllib.request.urlopen(collector.http_url + "/metrics", timeout=10).read()
    assert b'xray_requests_total{code="ok",transport="events"} 2.0' in metrics


def test_a_start_is_visible_as_running_until_its_end_arrives(
        collector: RunningCollector, db: psycopg.Connection, migrated_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    start, end = EVENTS["events"][1], EVENTS["events"][2]
    assert post(collector, json.dumps({"events": [start]}).encode())[0] == 200
    query = "SELECT status, ended_at IS NULL, why FROM xray_steps"
    assert db.execute(query).fetchall() == [("running", True, None)]
    assert main(["show", "run-7", "--database-url", migrated_url]) == 0
    assert "  1. keywords [llm]  running" in capsys.readouterr().out.splitlines()
    assert post(collector, json.dumps({"events": [end]}).encode())[0] == 200
    assert db.execute(query).fetchall() == [("ok", False, "3 keywords")]


def test_refused_and_changed_events_are_reported(collector: RunningCollector,
                                                 db: psycopg.Connection) -> None:
    events = {"events": [
        {"stepEnd": {"runId": "run-8", "stepId": "1", "type": "filter",
                     "candidatesIn": -1}},
        {"stepEnd": {"stepId": "orphan"}},
    ]}
    status, body, _ = post(collector, json.dumps(events).encode())
    answer = json.loads(body)
    assert status == 200 and answer["rejectedEvents"] == "1"
    assert "run_id is required" in answer["errorMessage"]
    assert "xray.step.candidates_in must not be negative" in answer["errorMessage"]
    stored = db.execute("SELECT candidates_in, attributes FROM xray_steps").fetchall()
    assert stored == [(None, {"xray.step.candidates_in": -1})]


@pytest.mark.parametrize(("body", "content_type", "code", "message"), [
    (b"{not json", "application/json", 400, "not an xray.v1.EventBatch in JSON"),
    (b'{"events": [{"stepEnd": {"seq": "x"}}]}', "application/json", 400, "seq"),
    (b"\x0a\xff\xff", "application/x-protobuf", 400, "in protobuf"),
    (b"{}", "text/plain", 415, "unsupported Content-Type"),
])
def test_bad_requests_get_a_clear_error(collector: RunningCollector, body: bytes,
                                        content_type: str, code: int, message: str) -> None:
    status, answer, _ = post(collector, body, content_type)
    assert status == code
    if content_type == "application/json":
        assert message in json.loads(answer)["message"]
    else:
        assert message.encode() in answer


def test_the_readme_curl_example_shows_in_xray_show(
        collector: RunningCollector, db: psycopg.Connection, migrated_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    batch = Path(__file__).resolve().parents[2] / "examples" / "events" / "batch.json"
    done = subprocess.run(
        [curl, "-sS", collector.http_url + "/events", "-H", "Content-Type: application/json",
         "--data-binary", f"@{batch}"], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout == "{}"
    assert main(["show", "curl-run-1", "--database-url", migrated_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("run curl-run-1  pipeline=competitor_search  entity=B0CXYZ"
                        "  status=ok")
    assert lines[1] == "  1. generate_keywords [llm]  1200.0 ms"
    assert '     input: {"asin":"B0CXYZ"}' in lines  # show prints each step's evidence
    second = next(i for i, line in enumerate(lines) if line.startswith("  2. "))
    assert lines[second].startswith(
        "  2. category_filter [filter]  5000 → 40  (dropped 99.2%)")
    assert "top reject reasons: category_mismatch: 4720, price: 240" in lines[second + 2]
