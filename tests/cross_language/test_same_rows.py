"""The TypeScript SDK (events to ``POST /events``) and the Python SDK (OTLP spans) run the
same pipeline against one collector: the stored rows agree field by field.

Only what identifies the producer's spans differs by design (trace and span ids, times)
and the stack trace OpenTelemetry Python keeps with an exception. The failing step raises a
built-in ``LookupError``: OpenTelemetry Python names other exception types with their
module (``package.module.PickError``), JavaScript has no modules in error names.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

import xray_otel as xray
from tests.fix_collector import RunningCollector

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node must be on PATH")

RUN_COLUMNS = ("pipeline", "entity", "status", "error", "service_name", "ingest_warnings")
STEP_COLUMNS = ("seq", "step_name", "step_type", "pipeline", "candidates_in", "candidates_out",
                "drop_ratio", "why", "why_json", "input", "output", "metrics", "status",
                "error", "ingest_warnings", "attributes - 'exception.stacktrace'",
                "ended_at IS NOT NULL", "duration_ms >= 0")
ARTIFACT_COLUMNS = ("attribute", "artifact_id", "size_bytes", "content_type", "storage",
                    "preview", "downgraded")


def python_pipeline(provider: TracerProvider, run_id: str) -> None:
    with xray.run("xlang", entity="B0XL", run_id=run_id, tracer_provider=provider):
        with xray.step("llm", name="keywords"):
            xray.record(input={"asin": "B0XL"}, output=["case", "cover"], why="2 keywords",
                        metrics={"tokens": 12, "temperature": 0.5})
        with xray.step("search", name="search"):
            xray.record(candidates_out=100, why="100 hits")
        with xray.step("filter", name="category_filter"):
            xray.record(candidates_in=100, candidates_out=5, why="dropped 95%",
                        why_json={"top_reject_reasons": {"category_mismatch": 90, "price": 5}},
                        artifacts={"rejected": "laptop stand, monitor arm"})
        try:
            with xray.step("rank", name="pick"):
                xray.record(candidates_in=5)
                raise LookupError("no clear winner")
        except LookupError:
            pass


def stored(db: psycopg.Connection, run_id: str) -> dict[str, Any]:
    run = db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM xray_runs WHERE run_id = %s",
                     (run_id,)).fetchone()
    steps = db.execute(f"SELECT {', '.join(STEP_COLUMNS)} FROM xray_steps WHERE run_id = %s"
                       " ORDER BY seq", (run_id,)).fetchall()
    artifacts = db.execute(f"SELECT {', '.join(ARTIFACT_COLUMNS)} FROM xray_artifacts"
                           " WHERE run_id = %s ORDER BY attribute", (run_id,)).fetchall()
    assert run is not None and steps, f"nothing stored for {run_id}"
    return {
        "run": dict(zip(RUN_COLUMNS, run, strict=True)),
        "steps": [dict(zip(STEP_COLUMNS, step, strict=True)) for step in steps],
        "artifacts": [dict(zip(ARTIFACT_COLUMNS, a, strict=True)) for a in artifacts],
    }


def test_typescript_and_python_store_the_same_rows(collector: RunningCollector,
                                                   db: psycopg.Connection) -> None:
    ts_run, py_run = f"ts-{uuid.uuid4().hex}", f"py-{uuid.uuid4().hex}"
    assert NODE is not None
    done = subprocess.run([NODE, str(HERE / "pipeline.mjs"), collector.http_url, ts_run],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    provider = xray.configure(service_name="xlang", endpoint=collector.grpc_target,
                              insecure=True, set_global=False)
    try:
        python_pipeline(provider, py_run)
        assert xray.flush(timeout=30)
    finally:
        xray.shutdown()

    typescript, python = stored(db, ts_run), stored(db, py_run)
    assert typescript["run"] == python["run"]
    assert len(typescript["steps"]) == len(python["steps"]) == 4
    for ts_step, py_step in zip(typescript["steps"], python["steps"], strict=True):
        for column in STEP_COLUMNS:
            assert ts_step[column] == py_step[column], (py_step["step_name"], column)
    assert typescript["artifacts"] == python["artifacts"]
    # And the values are the ones the pipeline decided, not just equal to each other.
    assert python["run"]["status"] == "ok" and python["run"]["service_name"] == "xlang"
    pick = python["steps"][3]
    assert (pick["status"], pick["error"]) == ("error", "LookupError: no clear winner")
    assert python["steps"][2]["drop_ratio"] == pytest.approx(0.95)
    assert python["steps"][0]["metrics"] == {"tokens": 12, "temperature": 0.5}
    assert python["artifacts"][0]["preview"] == "laptop stand, monitor arm"
